"""A run's metrics.csv across resumes: every logged step once, as in an uninterrupted run.

Lightning's CSV logger deletes metrics.csv when a run starts, so a resumed run would keep only
the steps after its checkpoint. Before resuming, the rows logged before the checkpoint move to a
side file; after training (or a crash) they are merged back in front of the new rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sparsessp_bmz.data.atomic import write_records_csv

METRICS_FILE = "metrics.csv"
#: Rows logged before the checkpoint a run resumes from, while the resumed run writes metrics.csv.
HISTORY_FILE = "metrics.before-resume.csv"


def checkpoint_step(path: Path) -> int:
    """The optimiser step a Lightning checkpoint was saved at (memory-mapped, not read whole)."""
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def _read_metrics(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        return [], []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _merged_metrics(logs: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Rows set aside before a resume followed by the rows logged since, under one header."""
    old_fields, old_rows = _read_metrics(logs / HISTORY_FILE)
    new_fields, new_rows = _read_metrics(logs / METRICS_FILE)
    return sorted({*old_fields, *new_fields}), old_rows + new_rows


def _logged_before(row: dict[str, str], resume_step: int) -> bool:
    """Whether a row precedes the checkpoint at `resume_step`: rows of the interrupted epoch
    (step >= resume_step) are logged again by the resumed run, except the validation of a finished
    run's final step, which a run continued with a larger budget does not repeat."""
    step = int(row["step"])
    final_validation = bool(row.get("val_mse")) and not row.get("train_loss_step")
    return step < resume_step or (step == resume_step and final_validation)


def set_aside_history(logs: Path, resume_step: int) -> None:
    """Move the rows of `logs`/metrics.csv logged before the checkpoint at `resume_step` to the
    side file.

    It is a move (metrics.csv goes), so a resume that dies before or while training cannot leave
    the same rows in both files; the next resume merges what is there again.
    """
    fields, rows = _merged_metrics(logs)
    if fields:
        kept = [row for row in rows if _logged_before(row, resume_step)]
        write_records_csv(logs / HISTORY_FILE, fields, kept)
        (logs / METRICS_FILE).unlink(missing_ok=True)


def restore_history(logs: Path) -> None:
    """metrics.csv = the rows set aside before resuming + the rows the resumed run logged."""
    if (logs / HISTORY_FILE).is_file():
        write_records_csv(logs / METRICS_FILE, *_merged_metrics(logs))
        (logs / HISTORY_FILE).unlink()


def discard_history(logs: Path) -> None:
    """Forget rows set aside by an earlier attempt: the run starts again from step 0."""
    (logs / HISTORY_FILE).unlink(missing_ok=True)


def latest(logs: Path, column: str) -> tuple[int, float] | None:
    """The last logged (step, value) of `column` in a run's history, resumes and a resume in
    progress included; None when nothing was logged yet."""
    _, rows = _merged_metrics(logs)
    for row in reversed(rows):
        value = row.get(column)
        if not value:
            continue
        try:
            return int(row["step"]), float(value)
        except (KeyError, TypeError, ValueError):
            continue  # a damaged row (a write cut off by a crash): the one before it tells
    return None
