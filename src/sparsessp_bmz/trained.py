"""What a finished training run hands to prediction, evaluation and export.

Training writes it into its checkpoints (see `sparsessp_bmz.training.checkpoint`); everything
downstream reads only this object, so nothing but the checkpoint file is needed to predict or
export a model. The facts about training are typed (`TrainingFacts`), so the RDF, the model card
and the package config read the same values instead of looking names up in a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from torch import nn

from sparsessp_bmz.metrics import ImageMetrics
from sparsessp_bmz.spec import ModelSpec


@dataclass(frozen=True)
class TrainingFacts:
    """How, how long and when the network was trained (what a checkpoint records).

    `checkpoint` is the file the model was read from; its run folder holds the run's evaluations.
    """

    checkpoint: Path | None = None
    run: str = ""
    global_step: int = 0
    epoch: int = 0
    loss: str = "mse"
    lr: float | None = None
    batch_size: int | None = None
    precision: str = ""
    seed: int | None = None
    lightning: str = ""
    saved_at: datetime | None = None
    val_mse: float | None = None
    best_val_mse: float | None = None

    @property
    def run_dir(self) -> Path | None:
        """RUN of RUN/checkpoints/<file>.ckpt."""
        return None if self.checkpoint is None else self.checkpoint.parent.parent

    def settings_text(self) -> str:
        """One line of the settings a reader of a model card wants to see."""
        parts = [f"{self.global_step} steps ({self.epoch} epochs)", f"loss {self.loss}"]
        if self.lr is not None:
            parts.append(f"Adam, learning rate {self.lr:g}")
        if self.batch_size is not None:
            parts.append(f"batch {self.batch_size}")
        if self.precision:
            parts.append(f"precision {self.precision}")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.best_val_mse is not None:
            parts.append(f"best validation MSE {self.best_val_mse:.4g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class TrainedModel:
    """A network with its description and the facts about how it was trained.

    `net` is in eval mode on the CPU. `voxel_size_um` is the (z, y, x) size of the *target* grid the
    network was trained on; the sparse input's z spacing is r times larger. `manifest` and
    `structures` say where the training data came from so export can take held-out test tensors.
    `test_metrics` holds whole-volume scores on the test split per structure, once evaluated.
    """

    spec: ModelSpec
    net: nn.Module
    voxel_size_um: tuple[float, float, float] = (0.29, 0.29, 0.29)
    manifest: Path | None = None
    structures: tuple[str, ...] = ()
    facts: TrainingFacts = field(default_factory=TrainingFacts)
    test_metrics: Mapping[str, ImageMetrics] = field(default_factory=dict)

    @property
    def predicted_structures(self) -> tuple[str, ...]:
        """The structures this network predicts: its tasks, else its one organelle."""
        return self.spec.tasks or (self.spec.organelle,)

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
        metrics = {k: v for k, v in self.test_metrics.items() if k == organelle}
        return replace(
            self, spec=baked.spec, net=baked, structures=(organelle,), test_metrics=metrics
        )
