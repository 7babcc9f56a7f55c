"""The Lightning module: one SparseSSP network, its loss, Adam with its learning-rate schedule,
early stopping, and the facts a checkpoint keeps.

The schedule and early stopping live here rather than in the trainer set-up: Lightning stores the
scheduler's state and merges `configure_callbacks` into the trainer (their state, e.g. early
stopping's count of validations without improvement, goes into every checkpoint too), so a
resumed run continues both exactly where it stopped.

Hyper-parameters are plain JSON-able dicts (the config dumped in JSON mode), so checkpoints load
with `torch.load(weights_only=True)` and rebuild the exact network without this class.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from functools import partial
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.nn import functional as F

from sparsessp_bmz.nets import build_net
from sparsessp_bmz.training.checkpoint import CHECKPOINT_FORMAT, FACTS_KEY
from sparsessp_bmz.training.config import TrainConfig
from sparsessp_bmz.training.losses import make_loss

Batch = dict[str, Any]


class SparseSSPModule(L.LightningModule):
    """Trains `build_net(config.model)` on sparse -> dense patches; validates with MSE."""

    def __init__(self, config: dict[str, Any], format: str = CHECKPOINT_FORMAT) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = TrainConfig.model_validate(config)
        self.spec = self.config.model
        self.net = build_net(self.spec)
        optim = self.config.optim
        self.loss_fn = make_loss(
            optim.loss, spotlight_lambda=optim.spotlight_lambda, spotlight_k=optim.spotlight_k
        )
        self.val_mse = math.nan
        self.best_val_mse = math.inf
        self.validated_at_step = -1

    def forward(self, sparse: Tensor, task: Tensor | None = None) -> Tensor:
        return self.net(sparse, task)

    def task_ids(self, batch: Batch) -> Tensor | None:
        """Task indices in the network's task order (the dataset numbers structures its own way)."""
        if not self.spec.tasks:
            return None
        names = batch["structure"]
        return torch.tensor([self.spec.tasks.index(n) for n in names], device=self.device)

    def on_train_epoch_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        prediction = self(batch["input"], self.task_ids(batch))
        loss = self.loss_fn(prediction, batch["target"])
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, batch_size=len(batch["input"]))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        prediction = self(batch["input"], self.task_ids(batch))
        mse = F.mse_loss(prediction.float(), batch["target"].float())
        self.log("val_mse", mse, prog_bar=True, sync_dist=True, batch_size=len(batch["input"]))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        value = self.trainer.callback_metrics.get("val_mse")
        if value is None:
            return
        self.val_mse = float(value)
        self.best_val_mse = min(self.best_val_mse, self.val_mse)
        self.validated_at_step = self.global_step

    def configure_optimizers(self) -> Any:
        optim = self.config.optim
        adam = torch.optim.Adam(self.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        if optim.schedule == "constant":
            return adam
        total = self._step_budget()
        warmup = int(optim.warmup_fraction * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(adam, partial(warmup_cosine, warmup, total))
        return {"optimizer": adam, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _step_budget(self) -> int:
        """Optimiser steps the run will take: `optim.max_steps`, or the epochs' steps (Lightning's
        estimate knows the devices and batches per epoch), whichever is smaller."""
        budget = self.config.optim.max_steps
        estimated = self.trainer.estimated_stepping_batches
        if self.config.max_epochs > 0 and math.isfinite(estimated):
            budget = int(estimated) if budget <= 0 else min(budget, int(estimated))
        return max(budget, 1)

    def configure_callbacks(self) -> list[L.Callback]:
        """Early stopping on validation MSE (`optim.early_stopping_patience` validations)."""
        patience = self.config.optim.early_stopping_patience
        if patience is None:
            return []
        from lightning.pytorch.callbacks import EarlyStopping

        return [
            EarlyStopping(
                monitor="val_mse", mode="min", patience=patience, check_on_train_epoch_end=False
            )
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[FACTS_KEY] = {
            "val_mse": self.val_mse,
            "best_val_mse": self.best_val_mse,
            "validated_at_step": self.validated_at_step,
            "global_step": int(self.global_step),
            "epoch": int(self.current_epoch),
            # what a package's RDF gives as the model's timestamp
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        facts = checkpoint.get(FACTS_KEY, {})
        self.val_mse = float(facts.get("val_mse", math.nan))
        self.best_val_mse = float(facts.get("best_val_mse", math.inf))
        self.validated_at_step = int(facts.get("validated_at_step", -1))


def warmup_cosine(warmup: int, total: int, step: int) -> float:
    """Learning-rate factor at `step`: linear from 1/warmup to 1 over `warmup` steps, then cosine
    from 1 to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class StepBudget(L.Callback):
    """Stops training after `max_steps` optimiser steps.

    Lightning's own `max_steps` switches its loops to iteration-based restarts, which replay part
    of an epoch when resuming from an end-of-epoch checkpoint; stopping through `should_stop`
    keeps the epoch-based restart, whose resumed runs are bit-identical to uninterrupted ones.
    """

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.max_steps:
            trainer.should_stop = True

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.max_steps:
            trainer.should_stop = True
