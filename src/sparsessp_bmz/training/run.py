"""One training run: resume-safe, finish-once, with best/last checkpoints and a CSV metrics log.

Layout of a run folder (derived from the config, see `TrainConfig.run_dir`):

    config.json               the validated config (what the folder is a run of)
    checkpoints/last.ckpt     written at every epoch end: what a restart resumes from
    checkpoints/best.ckpt     lowest validation MSE so far (validation every N epochs, and once
                              more at the very end when the last step was not validated)
    logs/metrics.csv          train_loss per logging step, val_mse per validation
    tensorboard/              the same metrics as TensorBoard events (trainer.logger=tensorboard)
    done.json                 written last; its presence with the same budget makes a re-run a no-op

Resuming restarts from the end of the last completed epoch. Crops depend on (seed, epoch, index)
only, so on the CPU a resumed run ends with bit-identical weights to an uninterrupted one, and its
metrics.csv holds every logged step once, as an uninterrupted run's does.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sparsessp_bmz.data.atomic import write_text
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.config import TrainConfig
from sparsessp_bmz.training.metrics_history import (
    METRICS_FILE,
    checkpoint_step,
    restore_history,
    set_aside_history,
)

CONFIG_FILE = "config.json"
DONE_FILE = "done.json"
CHECKPOINT_DIR = "checkpoints"
BEST = "best"
LAST = "last"
LOG_DIR = "logs"
TENSORBOARD_DIR = "tensorboard"

Status = Literal["trained", "resumed", "already finished"]


@dataclass(frozen=True)
class RunResult:
    """Where a finished run is and how it went."""

    run_dir: Path
    status: Status
    best_checkpoint: Path
    last_checkpoint: Path
    metrics_csv: Path
    best_val_mse: float
    global_step: int
    epoch: int


def checkpoint_path(run_dir: Path, name: str) -> Path:
    return run_dir / CHECKPOINT_DIR / f"{name}.ckpt"


def _budget(config: TrainConfig) -> dict[str, int]:
    return {"max_epochs": config.max_epochs, "max_steps": config.optim.max_steps}


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_done(run_dir: Path) -> dict[str, Any] | None:
    """The completion record of a run folder, or None while it is unfinished."""
    path = run_dir / DONE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _result(run_dir: Path, status: Status, done: dict[str, Any]) -> RunResult:
    return RunResult(
        run_dir=run_dir,
        status=status,
        best_checkpoint=checkpoint_path(run_dir, BEST),
        last_checkpoint=checkpoint_path(run_dir, LAST),
        metrics_csv=run_dir / LOG_DIR / METRICS_FILE,
        best_val_mse=float(done["best_val_mse"]),
        global_step=int(done["global_step"]),
        epoch=int(done["epoch"]),
    )


def is_finished(config: TrainConfig) -> bool:
    """Whether the run of `config` completed with the same step/epoch budget."""
    done = read_done(config.run_dir())
    return done is not None and done.get("budget") == _budget(config)


def _check_owner(config: TrainConfig, run_dir: Path) -> None:
    """Refuse a folder that holds the run of a different config."""
    path = run_dir / CONFIG_FILE
    identity = config.identity()
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("identity") != identity:
            raise UserInputError(
                f"run folder {run_dir} holds a different training run (config hash "
                f"{saved.get('identity')}, this one {identity}); choose another trainer.run_dir "
                f"or delete the folder"
            )


def _claim_run_dir(config: TrainConfig, run_dir: Path) -> None:
    """Record which config the folder belongs to."""
    payload = {"identity": config.identity(), "config": config.model_dump(mode="json")}
    _write_json(run_dir / CONFIG_FILE, payload)


def _deterministic(config: TrainConfig) -> bool:
    if config.trainer.deterministic is not None:
        return config.trainer.deterministic
    import torch

    accelerator = config.trainer.accelerator
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def _require_tensorboard() -> None:
    """Fail before any work when `trainer.logger=tensorboard` cannot write event files."""
    from importlib.util import find_spec

    # Lightning's TensorBoardLogger writes with tensorboard (torch.utils.tensorboard) or, failing
    # that, tensorboardX (lightning/fabric/loggers/tensorboard.py)
    if find_spec("tensorboard") is None and find_spec("tensorboardX") is None:
        raise UserInputError(
            "trainer.logger=tensorboard needs the tensorboard package: pip install tensorboard "
            "(or leave trainer.logger=csv)"
        )


def _loggers(config: TrainConfig, run_dir: Path, resume_step: int | None) -> list[Any]:
    """The CSV logger (logs/metrics.csv, always) and, on request, a TensorBoard logger."""
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = [
        # flushed at every logging step, so a killed run's history is on disk up to its checkpoint
        CSVLogger(
            run_dir,
            name=LOG_DIR,
            version="",
            flush_logs_every_n_steps=config.trainer.log_every_n_steps,
        )
    ]
    if config.trainer.logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(
            TensorBoardLogger(
                run_dir,
                name=TENSORBOARD_DIR,
                version="",
                default_hp_metric=False,
                # SummaryWriter(purge_step=): a resumed run logs the steps after its checkpoint
                # again, so TensorBoard hides the interrupted run's events from that step on
                purge_step=resume_step,
            )
        )
    return loggers


def train(
    config: TrainConfig, *, callbacks: Sequence[Any] = (), verbose: bool | None = None
) -> RunResult:
    """Train `config` to its budget, resuming from the run's last checkpoint when there is one.

    A run that already finished with the same budget is not touched. `callbacks` are extra
    Lightning callbacks (tests use one to simulate a crash). `verbose` shows Lightning's own
    console output (banner, model summary, its progress bar) instead of one quiet progress bar;
    None: the process-wide setting of `training.progress.set_verbose`.
    """
    run_dir = config.run_dir()
    _check_owner(config, run_dir)
    done = read_done(run_dir)
    if done is not None and done.get("budget") == _budget(config):
        return _result(run_dir, "already finished", done)
    if config.trainer.logger == "tensorboard":
        _require_tensorboard()

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.utilities import rank_zero_only

    from sparsessp_bmz.training.batchnorm import PreciseBatchNorm
    from sparsessp_bmz.training.datamodule import SparsePatchDataModule
    from sparsessp_bmz.training.module import SparseSSPModule, StepBudget
    from sparsessp_bmz.training.progress import (
        LightningProgressBar,
        StepProgressBar,
        is_verbose,
        lightning_console,
    )

    verbose = is_verbose() if verbose is None else verbose
    run_dir.mkdir(parents=True, exist_ok=True)
    _claim_run_dir(config, run_dir)
    (run_dir / DONE_FILE).unlink(missing_ok=True)
    last = checkpoint_path(run_dir, LAST)
    resume = last if last.is_file() else None
    resume_step = checkpoint_step(resume) if resume is not None else None

    keeps_metrics = rank_zero_only.rank == 0  # one process writes the metrics history
    if resume_step is not None and keeps_metrics:
        set_aside_history(run_dir / LOG_DIR, resume_step)
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    module = SparseSSPModule(config.model_dump(mode="json"))
    datamodule = SparsePatchDataModule(config)
    best_callback = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename=BEST,
        monitor="val_mse",
        mode="min",
        save_top_k=1,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    last_callback = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename=LAST,
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    max_steps = config.optim.max_steps
    budget = [StepBudget(max_steps)] if max_steps > 0 else []
    precise_bn = PreciseBatchNorm(
        datamodule.train_dataloader, config.optim.bn_recalibration_batches
    )
    bar: StepProgressBar | LightningProgressBar | None = None
    if config.trainer.progress_bar:
        label = "resumed" if resume is not None else ""
        bar = LightningProgressBar() if verbose else StepProgressBar(max_steps, label)
    with lightning_console(verbose), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(directory|dir) .*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # Lightning's own deprecation noise (torch pytree API)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer = L.Trainer(
            accelerator=config.trainer.accelerator,
            devices=config.trainer.devices,
            strategy=config.trainer.strategy,
            precision=config.trainer.precision,  # type: ignore[arg-type]
            max_epochs=config.max_epochs,
            max_steps=-1,
            check_val_every_n_epoch=config.optim.val_every_n_epochs,
            num_sanity_val_steps=0 if resume else 1,
            callbacks=[precise_bn, best_callback, last_callback, *budget, *callbacks]
            + ([bar] if bar is not None else []),
            logger=_loggers(config, run_dir, resume_step),
            log_every_n_steps=config.trainer.log_every_n_steps,
            deterministic=_deterministic(config),
            enable_progress_bar=bar is not None,
            # `sparsessp-bmz nets` describes the network; --verbose shows Lightning's summary
            enable_model_summary=verbose,
            default_root_dir=run_dir,
        )
        try:
            # Our checkpoints hold tensors, numbers, strings and plain dicts only (the module's
            # hyper-parameters are the config dumped in JSON mode, see module.py), so resuming
            # unpickles nothing: torch.load(weights_only=True).
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
            if trainer.interrupted:
                raise KeyboardInterrupt(
                    f"training of {run_dir} was interrupted; run again to resume"
                )
            _validate_final_step(trainer, module, datamodule, best_callback, run_dir)
        finally:
            if isinstance(bar, StepProgressBar):
                bar.close()
            if keeps_metrics:
                restore_history(run_dir / LOG_DIR)

    record = {
        "budget": _budget(config),
        "best_val_mse": module.best_val_mse,
        "global_step": int(trainer.global_step),
        "epoch": int(trainer.current_epoch),
        "model_id": config.model.model_id,
    }
    if trainer.is_global_zero:
        _write_json(run_dir / DONE_FILE, record)
    return _result(run_dir, "resumed" if resume else "trained", record)


def _validate_final_step(trainer, module, datamodule, best_callback, run_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """Validate the final weights when the schedule did not, and keep them if they are best.

    Without this a short run (max_steps below one validation interval) would end without a best
    checkpoint, and a long one could lose its last, often best, stretch of training.
    """
    if module.validated_at_step == trainer.global_step:
        return
    trainer.validate(module, datamodule=datamodule, verbose=False)
    best = checkpoint_path(run_dir, BEST)
    score = best_callback.best_model_score
    previous = float(score) if score is not None and best.is_file() else math.inf
    if module.val_mse < previous:
        # a full checkpoint, as ModelCheckpoint writes; saying so also keeps Lightning from
        # logging "`weights_only` was not set, defaulting to `False`" (its dump_checkpoint)
        trainer.save_checkpoint(best, weights_only=False)
