"""What the run folders of a matrix say: the state of each entry, and the summary rebuilt from them.

Only the run folders (and the job ids a submission recorded) are read, so `matrix status` and
`matrix collect` work from any machine that sees the output folder, while an array runs or after
it ended, without asking the scheduler:

- finished: done.json with the entry's budget (`run.is_finished`);
- running: someone holds the run's lock (`run_lock`), whose record names the SLURM job;
- failed: the last attempt left error.log (`matrix.run_entry`), and nobody trains it now;
- pending: anything else (submitted and waiting, interrupted, or never started);
- invalid: the entry's config does not validate, or its run folder cannot be read (a damaged
  done.json, an unreadable metrics.csv); the error says why, and the other entries are shown.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.config import TrainConfig
from sparsessp_bmz.training.matrix import (
    ERROR_LOG,
    Entry,
    MatrixSettings,
    summary_dir,
)
from sparsessp_bmz.training.matrix_summary import EntryResult, fill_scores, write_summary

State = Literal["pending", "running", "finished", "failed", "invalid"]


@dataclass(frozen=True)
class EntryStatus:
    """One entry as its run folder shows it now."""

    entry: Entry
    state: State
    job_id: str = ""
    steps: int | None = None
    val_mse: float = math.nan
    error: str = ""

    @property
    def name(self) -> str:
        return f"{self.entry.organelle}/r{self.entry.ratio}/{self.entry.topology}"


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def entry_status(entry: Entry, jobs: dict[str, str]) -> EntryStatus:
    """The state of one entry; `jobs` maps run folders to the job ids of their submission.

    A run folder that cannot be read is this entry's `invalid` state, not an error: one damaged
    entry must not hide the state of the others."""
    from sparsessp_bmz.training.executors import job_key

    if entry.config is None:
        return EntryStatus(entry, "invalid", error=entry.error)
    job = jobs.get(job_key(entry.config.run_dir()), "")
    try:
        return _read_entry_status(entry, entry.config, job)
    except (UserInputError, OSError, ValueError, csv.Error) as err:
        return EntryStatus(
            entry, "invalid", job, error=f"{type(err).__name__}: {err}".splitlines()[0]
        )


def _read_entry_status(entry: Entry, config: TrainConfig, job: str) -> EntryStatus:
    from sparsessp_bmz.training.metrics_history import latest
    from sparsessp_bmz.training.run import LOG_DIR, is_finished, read_done
    from sparsessp_bmz.training.run_lock import current_holder

    run_dir = config.run_dir()
    if is_finished(config):
        done = read_done(run_dir)
        assert done is not None
        return EntryStatus(entry, "finished", job, done["global_step"], done["best_val_mse"])
    logged = latest(run_dir / LOG_DIR, "val_mse")
    steps, val_mse = logged if logged is not None else (None, math.nan)
    holder = current_holder(run_dir)
    if holder is not None:
        running_job = holder.slurm_job_id or f"pid {holder.pid} on {holder.host}"
        return EntryStatus(entry, "running", running_job, steps, val_mse)
    log = run_dir / ERROR_LOG
    if log.is_file():
        return EntryStatus(entry, "failed", job, steps, val_mse, _last_line(log))
    return EntryStatus(entry, "pending", job, steps, val_mse)


def statuses(settings: MatrixSettings, entries: list[Entry], out: Path) -> list[EntryStatus]:
    """Every entry's state, with the job ids recorded under the summary folder `out`."""
    from sparsessp_bmz.training.executors import read_jobs

    jobs = read_jobs(out)
    return [entry_status(entry, jobs) for entry in entries]


def collect(
    path: Path, settings: MatrixSettings, entries: list[Entry]
) -> tuple[list[EntryResult], Path]:
    """summary.csv/md rebuilt from the run folders (after an array ended, or while it runs).

    Finished entries get their scores through `fill_scores` (the evaluation each array task
    stored; computed here when missing), the others their state and error.
    """
    from sparsessp_bmz.training.run import BEST, checkpoint_path

    out = summary_dir(path, settings, entries)
    rows = []
    for status in statuses(settings, entries, out):
        entry = status.entry
        row = EntryResult(entry.organelle, entry.ratio, entry.topology, error=status.error)
        # an entry whose folder cannot be read failed, as far as the summary can tell
        row.status = "failed" if status.state == "invalid" else status.state
        if entry.config is not None:
            row.model_id = entry.config.model.model_id
            row.run_dir = str(entry.config.run_dir())
        row.steps = status.steps or 0
        row.best_val_mse = status.val_mse
        if status.state == "finished" and settings.evaluate and entry.config is not None:
            best = checkpoint_path(entry.config.run_dir(), BEST)
            fill_scores(row, entry.config, best, settings.split)
        rows.append(row)
    write_summary(rows, out)
    return rows, out
