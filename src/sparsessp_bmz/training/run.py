"""One training run: resume-safe, finish-once, with best/last checkpoints and a CSV metrics log.

Layout of a run folder (derived from the config, see `TrainConfig.run_dir`):

    config.json               the validated config (what the folder is a run of)
    checkpoints/last.ckpt     written at every epoch end: what a restart resumes from
    checkpoints/best.ckpt     lowest validation MSE so far (validation every N epochs, and once
                              more at the very end when the last step was not validated)
    logs/metrics.csv          train_loss per logging step, val_mse per validation
    tensorboard/              the same metrics as TensorBoard events (trainer.logger=tensorboard)
    done.json                 written last; its presence with the same budget makes a re-run a no-op
    run.lock                  held (flock) by the one process training the run, see `run_lock`
    run.lock.guard            held for microseconds while the lock is taken (`run_lock`)

Checkpoints are written to a temporary name and renamed into place (`checkpoint_io`), and the
last.ckpt being replaced is kept as checkpoints/last.previous.ckpt: what a run falls back to when
its last.ckpt is damaged (see `_resume_point`). Before a run folder is created or resumed, every
train and validation row of the manifest is opened (`data.check`), so bad data fails in seconds.

Resuming restarts from the end of the last completed epoch. Crops depend on (seed, epoch, index)
only, so on the CPU a resumed run ends with bit-identical weights to an uninterrupted one, and its
metrics.csv holds every logged step once, as an uninterrupted run's does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sparsessp_bmz.data.atomic import write_text
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.checkpoint_io import previous_path, write_error
from sparsessp_bmz.training.cluster import DEFAULT_MAX_REQUEUES
from sparsessp_bmz.training.config import TrainConfig
from sparsessp_bmz.training.metrics_history import (
    METRICS_FILE,
    discard_history,
    restore_history,
    set_aside_history,
)
from sparsessp_bmz.training.preemption import (
    Preempted,
    preemption_guard,
    requeue,
)
from sparsessp_bmz.training.run_lock import LOCK_FILE, run_lock

CONFIG_FILE = "config.json"
DONE_FILE = "done.json"
CHECKPOINT_DIR = "checkpoints"
BEST = "best"
LAST = "last"
LOG_DIR = "logs"
TENSORBOARD_DIR = "tensorboard"
#: Suffix a damaged last.ckpt is renamed to when the run falls back to the checkpoint before it.
DAMAGED_SUFFIX = ".damaged"
#: Disk errors that are the user's to fix (full, read-only or forbidden), not bugs.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)

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
    try:
        write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        raise write_error(path, err) from err


def _read_json(path: Path, fix: str) -> dict[str, Any]:
    """A run folder's JSON record; a damaged one is one error naming the file and `fix`."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        why = f"{type(err).__name__}: {err}".splitlines()[0]
        raise UserInputError(f"{path} is damaged ({why}); {fix}") from err
    if not isinstance(loaded, dict):
        raise UserInputError(f"{path} is damaged (not a JSON object); {fix}")
    return loaded


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_done(run_dir: Path) -> dict[str, Any] | None:
    """The completion record of a run folder, or None while it is unfinished."""
    path = run_dir / DONE_FILE
    if not path.is_file():
        return None
    fix = (
        f"delete {path} and run the same command again (the run resumes from its last checkpoint "
        f"and writes it anew)"
    )
    done = _read_json(path, fix)
    budget = done.get("budget")
    score = done.get("best_val_mse")
    if (
        not isinstance(budget, dict)
        or not all(isinstance(budget.get(key), int) for key in ("max_epochs", "max_steps"))
        or not _is_count(done.get("global_step"))
        or not _is_count(done.get("epoch"))
        or not isinstance(score, int | float)
        or isinstance(score, bool)
    ):
        raise UserInputError(
            f"{path} is damaged (budget, best_val_mse, global_step or epoch missing or not "
            f"numbers); {fix}"
        )
    return done


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
        saved = _read_json(
            path,
            f"if {run_dir} is the run of this config, delete {path} and run again (the folder is "
            f"then claimed by this config); otherwise choose another trainer.run_dir",
        )
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
    config: TrainConfig,
    *,
    callbacks: Sequence[Any] = (),
    verbose: bool | None = None,
    max_requeues: int = DEFAULT_MAX_REQUEUES,
) -> RunResult:
    """Train `config` to its budget, resuming from the run's last checkpoint when there is one.

    A run that already finished with the same budget is not touched. `callbacks` are extra
    Lightning callbacks (tests use one to simulate a crash). `verbose` shows Lightning's own
    console output (banner, model summary, its progress bar) instead of one quiet progress bar;
    None: the process-wide setting of `training.progress.set_verbose`.

    One process trains a run folder at a time (`run_lock`): a second one is refused at once with
    a UserInputError naming the holder. On SIGUSR1 (SLURM's warning before a time limit) the run
    stops before its next step, requeues its SLURM job (at most `max_requeues` times) and raises
    `Preempted`; the next run resumes bit-identically (`preemption`).
    """
    run_dir = config.run_dir()
    _check_owner(config, run_dir)
    done = read_done(run_dir)
    if done is not None and done.get("budget") == _budget(config):
        return _result(run_dir, "already finished", done)
    if config.trainer.logger == "tensorboard":
        _require_tensorboard()
    with preemption_guard() as stop:
        check_data(config)  # every row it will read, before the run folder is created or touched
        try:
            with _writer(run_dir):
                return _train_locked(config, run_dir, [*callbacks, stop], verbose)
        except Preempted as err:
            raise Preempted(f"training of {run_dir} {err}; {requeue(max_requeues)}") from err


@contextlib.contextmanager
def _writer(run_dir: Path) -> Iterator[None]:
    """The run's lock, taken by the process of global rank 0 only: the other DDP ranks are its
    helpers (started by it, or by srun beside it), not second writers."""
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(run_lock(run_dir))
        except OSError as err:  # a run folder that cannot be created or written
            raise write_error(run_dir / LOCK_FILE, err) from err
        yield


def _train_locked(
    config: TrainConfig, run_dir: Path, callbacks: Sequence[Any], verbose: bool | None
) -> RunResult:
    """`train` once the run folder is this process's: checked again, since the previous holder
    may have finished or claimed it between the first look and the lock."""
    _check_owner(config, run_dir)
    done = read_done(run_dir)
    if done is not None and done.get("budget") == _budget(config):
        return _result(run_dir, "already finished", done)

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.utilities import rank_zero_only

    from sparsessp_bmz.training.batchnorm import PreciseBatchNorm
    from sparsessp_bmz.training.checkpoint_io import AtomicCheckpointIO
    from sparsessp_bmz.training.datamodule import SparsePatchDataModule
    from sparsessp_bmz.training.module import SparseSSPModule, StepBudget
    from sparsessp_bmz.training.progress import (
        LightningProgressBar,
        StepProgressBar,
        is_verbose,
        lightning_console,
    )

    verbose = is_verbose() if verbose is None else verbose
    resume_point = _resume_point(config, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _claim_run_dir(config, run_dir)
    (run_dir / DONE_FILE).unlink(missing_ok=True)
    resume, resume_step = resume_point if resume_point is not None else (None, None)

    keeps_metrics = rank_zero_only.rank == 0  # one process writes the metrics history
    if keeps_metrics:
        if resume_step is not None:
            set_aside_history(run_dir / LOG_DIR, resume_step)
        else:  # from the start: rows of an earlier, abandoned attempt must not come back
            discard_history(run_dir / LOG_DIR)
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
        # on a machine with SLURM installed Lightning suggests srun for every run; a run here
        # is one process, or DDP ranks that Lightning starts itself on this node
        warnings.filterwarnings("ignore", message=".*`srun` command is available.*")
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
            # whole checkpoints or none, and the previous last.ckpt kept (see checkpoint_io)
            plugins=[AtomicCheckpointIO(keep_previous=[f"{LAST}.ckpt"]), *_cluster_plugins()],
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
        except OSError as err:
            # checkpoints say so themselves (checkpoint_io); this is the metrics log and the rest
            if err.errno not in DISK_ERRORS:
                raise
            where = Path(err.filename) if err.filename else run_dir
            raise write_error(where, err) from err
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


def _cluster_plugins() -> list[Any]:
    """Under SLURM, Lightning's SLURM environment without its own requeue handler (ours is
    `preemption`; Lightning would also ignore SIGTERM, which `scontrol requeue` sends)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def check_data(config: TrainConfig) -> None:
    """Open every train and validation row of the run's manifest (its structures only): an
    unknown structure, an unreadable file, a missing channel, an unknown voxel size, NaNs or a
    volume smaller than the patch is one UserInputError, before any run folder exists."""
    from sparsessp_bmz.data.check import require_usable, training_rows

    settings = config.data_settings
    require_usable(
        training_rows(settings),
        settings,
        f"training of {config.model.model_id}",
        patch=config.model.patch,
    )


def _readable_step(path: Path, config: TrainConfig) -> tuple[int | None, str]:
    """The step of a checkpoint this run can resume from, or None and why it cannot."""
    from sparsessp_bmz.training.checkpoint import DamagedCheckpoint, resumable_step

    try:
        return resumable_step(path, config), ""
    except DamagedCheckpoint as err:
        return None, err.reason


def _resume_point(config: TrainConfig, run_dir: Path) -> tuple[Path, int] | None:
    """The checkpoint a run resumes from, and its step; None: start from scratch.

    Normally checkpoints/last.ckpt. When it is damaged - it does not load (truncated by a full
    disk or a kill under an older version, overwritten), or it is not this run's any more (its
    stored config or facts edited, weights that do not fit; `checkpoint.resumable_step`) - the
    run falls back to last.previous.ckpt, the epoch-end checkpoint that last.ckpt replaced
    (`checkpoint_io`). Resuming from it is exactly like resuming after a crash one epoch
    earlier: crops depend on (seed, epoch, index) only, so the weights end bit-identical to an
    uninterrupted run's; the metrics rows logged after its step are set aside and logged again
    (`set_aside_history` keeps only the rows before it); and best.ckpt is re-derived, since the
    callbacks' best score is the one stored in that checkpoint. The damaged file is renamed to
    last.ckpt.damaged (not deleted: it is evidence, and must not be rotated onto
    last.previous.ckpt by the next save) and a warning says so.

    best.ckpt is deliberately not a fallback: it is written during validation (batch-norm
    statistics recalibrated for it, the epoch's end hooks not yet run), so Lightning would resume
    it as a mid-epoch checkpoint and the run would not end as an uninterrupted one would. When
    no good checkpoint is left, the error names the files to delete: the run then starts again
    from step 0.
    """
    last = checkpoint_path(run_dir, LAST)
    previous = previous_path(last)
    damaged: list[tuple[Path, str]] = []
    for candidate in (last, previous):
        if not candidate.is_file():
            continue
        step, why = _readable_step(candidate, config)
        if step is None:
            damaged.append((candidate, why))
            continue
        if candidate == previous and last.is_file():
            aside = last.with_name(last.name + DAMAGED_SUFFIX)
            with contextlib.suppress(FileNotFoundError):  # another DDP rank got there first
                os.replace(last, aside)
            _warn(
                f"{last} is damaged ({damaged[0][1]}); it was renamed to {aside.name} and "
                f"training resumes from {previous.name} (step {step}), the checkpoint before it"
            )
        return candidate, step
    if damaged:
        names = " and ".join(str(path) for path, _ in damaged)
        raise UserInputError(
            f"{damaged[0][0]} is damaged ({damaged[0][1]}) and no earlier complete checkpoint of "
            f"the run is left to resume from; delete {names} to train this run again from step 0 "
            f"(or delete the run folder {run_dir})"
        )
    return None


def _warn(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold yellow]warning:[/] {message}", highlight=False)


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
