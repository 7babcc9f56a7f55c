"""What a training prints: one progress bar per run, or Lightning's own output with `--verbose`.

Quiet (the default): Lightning's informational log lines are held back for the duration of a
run and one rich progress bar shows optimiser steps against the run's step budget, the epoch,
the latest training loss and the latest validation MSE. Verbose (`--verbose` on `train`, `matrix`
and `demo`): Lightning's banner, model summary and progress bar, as Lightning prints them.

The switch is process-wide (`verbose_console`), because `demo` and `matrix` reach `train` through
code that does not pass options down; DDP workers re-run the same command line and so inherit it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column

_verbose = False

#: Loggers whose INFO lines are Lightning's console chatter (paths below are in the installed
#: lightning package). Every `rank_zero_info` goes to "lightning.pytorch.utilities.rank_zero"
#: (pytorch/utilities/rank_zero.py repoints `rank_zero_module.log` there), a child of
#: "lightning.pytorch", which pytorch/__init__.py sets to INFO with a StreamHandler of its own
#: (fabric/__init__.py does the same for "lightning.fabric"). Through it come:
#:   "GPU available: ... / TPU available: ..."    pytorch/trainer/setup.py `_log_device_info`
#:   "💡 Tip: ... litlogger"                      pytorch/trainer/connectors/logger_connector/
#:                                               logger_connector.py `configure_logger`
#:   "💡 Tip: ... litmodels"                      pytorch/trainer/connectors/callback_connector.py
#:                                               `_maybe_show_litmodels_tip`
#:   "Restoring states from the checkpoint ..."   pytorch/trainer/connectors/checkpoint_connector.py
#:   "`Trainer.fit` stopped: ..."                 pytorch/loops/fit_loop.py
#: and plain `logging.getLogger(__name__)` children of the two print "LOCAL_RANK: 0 -
#: CUDA_VISIBLE_DEVICES" (pytorch/accelerators/cuda.py) and "Initializing distributed"
#: (fabric/utilities/distributed.py). Raising the level of these two parents is the switch
#: Lightning documents for its console output ("Configure console logging"); warnings
#: (rank_zero_warn, Python warnings) and errors still show.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


def set_verbose(flag: bool) -> None:
    """Show Lightning's own console output in every later training of this process."""
    global _verbose
    _verbose = bool(flag)


def is_verbose() -> bool:
    return _verbose


@contextmanager
def verbose_console(flag: bool = True) -> Iterator[None]:
    """`set_verbose(flag)` for the duration of a block (what the CLI commands use)."""
    previous = _verbose
    set_verbose(flag)
    try:
        yield
    finally:
        set_verbose(previous)


@contextmanager
def lightning_console(verbose: bool) -> Iterator[None]:
    """Lightning's INFO lines (see LIGHTNING_LOGGERS) shown when `verbose`, held back otherwise;
    the loggers' levels are restored afterwards."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if not verbose:
            logger.setLevel(logging.WARNING)
        elif logger.getEffectiveLevel() > logging.INFO:  # someone quietened it before
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def step_budget(max_steps: int, max_epochs: int, steps_per_epoch: float) -> int | None:
    """Optimiser steps a run ends at: the sooner of max_steps and max_epochs x steps per epoch.

    -1 means no limit from that side; None: no finite budget is known (an epoch of unknown
    length and no step limit).
    """
    limits = []
    if max_steps > 0:
        limits.append(max_steps)
    if max_epochs > 0 and math.isfinite(steps_per_epoch) and steps_per_epoch > 0:
        limits.append(max_epochs * int(steps_per_epoch))
    return min(limits) if limits else None


class StepProgressBar(ProgressBar):
    """One rich bar for a whole run: `steps done/step budget`, epoch, loss and val_mse.

    Lightning's RichProgressBar draws a bar per epoch titled "Epoch N/max_epochs-1", which reads
    "Epoch 12/-2" when only a step budget is set (max_epochs=-1), and a second one per
    validation. This bar lives from the first hook to `close()`, which the caller owns, so the
    final validation `train()` runs after `fit` updates the same bar. Output goes to stderr; when
    that is not a terminal rich prints the final state of the bar once.
    """

    def __init__(self, max_steps: int, label: str = "", console: Console | None = None) -> None:
        super().__init__()
        self.label = label  # shown before the bar when given (the commands name the run already)
        self.max_steps = max_steps
        self.console = console
        self._enabled = True
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._epoch = 0
        self._max_epochs = -1
        self._loss = math.nan
        self._val_mse = math.nan
        self._phase = ""

    # ---- Lightning's ProgressBar interface ----------------------------------------------

    def disable(self) -> None:  # Lightning calls it on every rank but global zero
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.console.print(*args, **kwargs)
        else:
            super().print(*args, **kwargs)

    # ---- hooks -------------------------------------------------------------------------

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._show(trainer, "checking validation")

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._show(trainer, "")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = trainer.num_training_batches  # per device; inf for an iterable without len
        steps_per_epoch = batches / max(trainer.accumulate_grad_batches, 1)
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        if math.isfinite(steps_per_epoch):
            steps_per_epoch = math.ceil(steps_per_epoch)
        total = step_budget(self.max_steps, max_epochs, steps_per_epoch)
        restored = getattr(pl_module, "val_mse", math.nan)  # a resumed run's last validation
        if isinstance(restored, float) and math.isfinite(restored):
            self._val_mse = restored
        self._show(trainer, "", total=total)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch = int(trainer.current_epoch) + 1  # the epoch under way, counted from 1
        self._show(trainer, "")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        loss = trainer.progress_bar_metrics.get("train_loss_step")
        if loss is not None:
            self._loss = float(loss)
        self._show(trainer, "")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._show(trainer, "validating")

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        done = batch_idx + 1
        batches = trainer.num_val_batches
        total = batches[dataloader_idx] if isinstance(batches, list) else batches
        self._show(trainer, f"validating {done}/{total}" if math.isfinite(total) else "validating")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val_mse")
        if value is not None:
            self._val_mse = float(value)
        self._show(trainer, "")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.close()

    # ---- the bar -----------------------------------------------------------------------

    def _status(self) -> str:
        parts = []
        if self._epoch > 0:
            epochs = f"/{self._max_epochs}" if self._max_epochs > 0 else ""
            parts.append(f"epoch {self._epoch}{epochs}")
        if math.isfinite(self._loss):
            parts.append(f"loss {self._loss:.3f}")
        if math.isfinite(self._val_mse):
            parts.append(f"val_mse {self._val_mse:.4f}")
        if self._phase:
            parts.append(self._phase)
        return " · ".join(parts)

    def _show(self, trainer: L.Trainer, phase: str, total: int | None = None) -> None:
        if not self._enabled:
            return
        if self._progress is None:
            # about 80 characters in all; the status wraps rather than being cut on narrow consoles
            columns = [
                *([TextColumn("{task.description}")] if self.label else []),
                BarColumn(bar_width=12),
                TextColumn("{task.fields[steps]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}", table_column=Column(overflow="fold")),
            ]
            self._progress = Progress(
                *columns, console=self.console or Console(stderr=True), transient=False
            )
            # until the epoch length is known (on_train_start), the step limit is the budget
            first_total = self.max_steps if self.max_steps > 0 else None
            self._task = self._progress.add_task(self.label, total=first_total, steps="", status="")
        assert self._task is not None
        self._phase = phase
        self._max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        done = int(trainer.global_step)
        update: dict[str, Any] = {"completed": done, "status": self._status()}
        if total is not None:
            update["total"] = total
        task_total = total if total is not None else self._progress.tasks[0].total
        update["steps"] = f"{done}/{int(task_total)} steps" if task_total else f"{done} steps"
        self._progress.update(self._task, **update)
        if not self._progress.live.is_started:
            self._progress.start()

    def close(self) -> None:
        """Stop the bar, leaving its final state on the console."""
        if self._progress is not None:
            self._phase = ""
            if self._task is not None:
                self._progress.update(self._task, status=self._status())
            self._progress.stop()
            self._progress = None
            self._task = None


class LightningProgressBar(RichProgressBar):
    """Lightning's own bar (what `--verbose` shows), without its negative epoch totals.

    RichProgressBar._get_train_description (lightning/pytorch/callbacks/progress/
    rich_progress.py) writes "Epoch N/{max_epochs - 1}", i.e. "Epoch 3/-2" for max_epochs=-1,
    which is how `train` runs on a step budget (see StepBudget); only then the total is left out.
    """

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs < 0:
            description = f"Epoch {current_epoch}"
            return f"{description:{len(self.validation_description)}}"
        return super()._get_train_description(current_epoch)
