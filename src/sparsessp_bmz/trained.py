"""What a finished training run hands to prediction, evaluation and export.

Training writes it into its checkpoints (see `sparsessp_bmz.training.checkpoint`); everything
downstream reads only this object, so nothing but the checkpoint file is needed to predict or
export a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from sparsessp_bmz.spec import ModelSpec


@dataclass(frozen=True)
class TrainedModel:
    """A network with its description and the facts about how it was trained.

    `net` is in eval mode on the CPU. `voxel_size_um` is the (z, y, x) size of the *target* grid the
    network was trained on; the sparse input's z spacing is r times larger. `manifest` and
    `structures` say where the training data came from so export can take held-out test tensors.
    """

    spec: ModelSpec
    net: nn.Module
    voxel_size_um: tuple[float, float, float] = (0.29, 0.29, 0.29)
    manifest: Path | None = None
    structures: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    training: dict[str, str | int | float] = field(default_factory=dict)

    def for_task(self, organelle: str) -> TrainedModel:
        """The task-free model of one structure of a multi-task network (what a package ships).

        The network is baked for `organelle` (see `SparseSSPNet.baked`); a single-task model is
        returned unchanged when `organelle` is its own structure.
        """
        if not self.spec.tasks:
            if organelle != self.spec.organelle:
                raise ValueError(f"{self.spec.model_id} predicts only {self.spec.organelle}")
            return self
        baked = self.net.baked(organelle)  # type: ignore[operator]
        return replace(self, spec=baked.spec, net=baked, structures=(organelle,))
