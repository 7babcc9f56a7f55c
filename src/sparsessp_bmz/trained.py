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

from sparsessp_bmz.data.config import DEFAULT_VOXEL_SIZE_UM, DataSettings
from sparsessp_bmz.errors import UserInputError
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
        """RUN of RUN/checkpoints/<file>.ckpt; None for a checkpoint kept anywhere else (a copy
        outside its run has no run folder to store evaluations in)."""
        if self.checkpoint is None or self.checkpoint.parent.name != "checkpoints":
            return None
        return self.checkpoint.parent.parent

    @property
    def epochs_done(self) -> int:
        """Epochs trained when the checkpoint was saved: checkpoints record Lightning's 0-based
        epoch index, and ours are saved at the end of an epoch's validation."""
        return self.epoch + 1 if self.global_step else 0

    def settings_text(self) -> str:
        """One line of the settings a reader of a model card wants to see."""
        parts = [f"{self.global_step} steps ({self.epochs_done} epochs)", f"loss {self.loss}"]
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

    `net` is in eval mode on the CPU. `data` are the run's validated data settings, whole (manifest,
    voxel grid, the fallback voxel size for files that record none, split fractions and seed),
    restricted to the structures the network learned, so evaluation and export read the data
    exactly as training did; a network built in Python has none. `test_metrics` holds
    whole-volume scores on the test split per structure, once evaluated.
    """

    spec: ModelSpec
    net: nn.Module
    data: DataSettings | None = None
    facts: TrainingFacts = field(default_factory=TrainingFacts)
    test_metrics: Mapping[str, ImageMetrics] = field(default_factory=dict)
    #: The target grid of a model that carries no data settings (one loaded from a package).
    grid_um: tuple[float, float, float] = DEFAULT_VOXEL_SIZE_UM

    @property
    def voxel_size_um(self) -> tuple[float, float, float]:
        """(z, y, x) size of the *target* grid the network was trained on; the sparse input's z
        spacing is r times larger."""
        return self.data.voxel_size_um if self.data is not None else self.grid_um

    @property
    def manifest(self) -> Path | None:
        """The training manifest, where export takes held-out test tensors from."""
        return self.data.manifest if self.data is not None else None

    def data_for(self, structures: tuple[str, ...] | None = None) -> DataSettings:
        """The training data settings for `structures` (default: the network's), or a clear
        error for a network that records no training data."""
        if self.data is None:
            raise UserInputError(
                f"{self.spec.model_id} records no training data (it was not read from a "
                "checkpoint); give the data settings yourself"
            )
        return self.data.model_copy(update={"structures": structures or self.structures})

    @property
    def structures(self) -> tuple[str, ...]:
        """The structures this network predicts: its tasks while it takes a task index, else its
        one organelle (a baked network's spec still lists the tasks it was baked from)."""
        return self.spec.structures if self.multi_task else (self.spec.organelle,)

    @property
    def multi_task(self) -> bool:
        """Whether the network still takes a task index (a package needs it baked first)."""
        return bool(getattr(self.net, "conditioned", False))

    def for_task(self, organelle: str) -> TrainedModel:
        """The task-free model of one structure of a multi-task network (what a package ships).

        The network is baked for `organelle` (see `SparseSSPNet.baked`); a task-free model is
        returned unchanged when `organelle` is its own structure.
        """
        if not self.multi_task:
            if organelle != self.spec.organelle:
                raise ValueError(f"{self.spec.model_id} predicts only {self.spec.organelle}")
            return self
        baked = self.net.baked(organelle)  # type: ignore[operator]
        metrics = {k: v for k, v in self.test_metrics.items() if k == organelle}
        data = None if self.data is None else self.data.model_copy(update={"structures": None})
        return replace(self, spec=baked.spec, net=baked, data=data, test_metrics=metrics)
