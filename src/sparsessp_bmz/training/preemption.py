"""SLURM's warning signal: stop at the next step, keep the last checkpoint, requeue the job.

SLURM sends SIGUSR1 some time before a job's time limit or preemption when asked to
(`sbatch --signal=USR1@90`; every matrix job asks for it: `ClusterSettings.signal_delay_s`).
A run that gets it stops before its next training step and leaves the run folder as a kill -9 at
that point would, minus the kill: every file complete, last.ckpt the checkpoint of the last
finished epoch, the metrics history merged back. Under SLURM the job is then requeued
(`scontrol requeue`), and the requeued job resumes from last.ckpt bit-identically on the CPU, as
`train` does after any interruption; elsewhere the process exits with a message saying how to
resume.

Why not a checkpoint of the interrupted epoch, as Lightning's own SLURM handler writes
(`lightning/pytorch/trainer/connectors/signal_connector.py`, `_slurm_sigusr_handler_fn`: an
`hpc_ckpt_N.ckpt` saved inside the signal handler)? A mid-epoch checkpoint does not resume
bit-identically (Lightning restarts an epoch it did not finish by replaying part of it, see
`module.StepBudget`), and a save inside a signal handler can interrupt another save. The price is
the steps since the last epoch end (one epoch at most; seconds to a minute at the paper's 50
steps per epoch). The requeue itself follows Lightning's handler: an array task is requeued as
ARRAYJOB_TASK, only global rank 0 requeues. submitit's own mechanism (`Checkpointable`,
`submitit/core/job_environment.py`) requeues the same way but saves state in the signal handler,
so it is not used; its handler is replaced while a run trains and restored afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import lightning as L
from rich.console import Console

from sparsessp_bmz.training.cluster import DEFAULT_MAX_REQUEUES, PREEMPTION_SIGNAL_NAME
from sparsessp_bmz.training.run_lock import slurm_job_id

#: The warning signal SLURM is asked to send (`ClusterSettings.slurm_parameters`).
PREEMPTION_SIGNAL = signal.Signals[f"SIG{PREEMPTION_SIGNAL_NAME}"]
#: Exit status of a preempted run: sysexits.h EX_TEMPFAIL, "a temporary failure; retry later".
EXIT_PREEMPTED = 75
#: SLURM counts the requeues of a job in this variable (sbatch(1), OUTPUT ENVIRONMENT VARIABLES).
RESTART_COUNT = "SLURM_RESTART_COUNT"


class Preempted(Exception):
    """A run stopped on the warning signal; its folder is ready to resume (message: how)."""


class PreemptionStop(L.Callback):
    """Stops training before the next step once the warning signal arrived.

    Raising inside `fit` is what a crash does: Lightning tears down without saving anything, so
    last.ckpt stays the complete checkpoint of the last finished epoch (see module docstring).
    """

    def __init__(self) -> None:
        self.received = False
        self.step = -1

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        # under DDP every rank stops at the same step, whichever got the signal (srun signals
        # its tasks; ranks started by Lightning's launcher on the same node get nothing)
        if trainer.strategy.reduce_boolean_decision(self.received, all=False):
            self.step = int(trainer.global_step)
            raise Preempted(f"stopped at step {self.step} on SIGUSR1")


@contextlib.contextmanager
def preemption_guard() -> Iterator[PreemptionStop]:
    """While the block runs, SIGUSR1 asks the yielded callback to stop training.

    The handler is installed for the whole run (data checks included), so the signal never
    falls through to its default action, which kills the process without a word.
    """
    stop = PreemptionStop()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # Python lets only the main thread handle signals
        return

    def note(signum: int, frame: FrameType | None) -> None:
        stop.received = True

    previous = signal.signal(PREEMPTION_SIGNAL, note)
    try:
        yield stop
    finally:
        signal.signal(PREEMPTION_SIGNAL, previous)


def requeue(max_requeues: int = DEFAULT_MAX_REQUEUES) -> str:
    """Requeue this SLURM job (rank 0 only); what happened, as the end of a sentence.

    Not under SLURM, nothing is requeued. After `max_requeues` requeues of the same job it is not
    requeued again: a run that never gets through an epoch before its time limit would otherwise
    loop forever.
    """
    job = slurm_job_id()
    if job is None:
        return "not under SLURM, nothing requeued; run the same command again to resume"
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        return f"rank 0 requeues SLURM job {job}"
    restarts = int(os.environ.get(RESTART_COUNT, "0") or 0)
    if restarts >= max_requeues:
        return (
            f"SLURM job {job} was requeued {restarts} times already (the limit); not requeued "
            f"again: give it a longer time limit (cluster.timeout_min) and resubmit"
        )
    done = subprocess.run(
        ["scontrol", "requeue", job], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        return f"`scontrol requeue {job}` failed ({why[0]}); resubmit the job"
    return f"SLURM job {job} requeued; it resumes from the last checkpoint"


@contextlib.contextmanager
def exit_when_preempted(console: Console) -> Iterator[None]:
    """For commands: a `Preempted` run is one yellow line and exit status `EXIT_PREEMPTED`
    (SystemExit: under submitit no result is written, so the requeued job reports the result)."""
    try:
        yield
    except Preempted as err:
        console.print(f"[bold yellow]preempted:[/] {err}", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_PREEMPTED) from err
