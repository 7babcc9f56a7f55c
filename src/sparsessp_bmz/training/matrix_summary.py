"""One row per matrix entry and the summary written from the rows.

The matrix (`training.matrix`) decides what runs where; this module says what a finished entry
reports (its scores on whole volumes of a split) and how the rows become summary.csv/md and a
console table. `fill_scores` is the one place a row gets its scores, whether the entry just
trained or `matrix collect` rebuilds the row from its run folder.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from sparsessp_bmz.metrics import METRIC_NAMES
from sparsessp_bmz.reporting import Column, console_table, metric_columns
from sparsessp_bmz.reporting import write_summary as report_summary
from sparsessp_bmz.training.config import TrainConfig


@dataclass
class EntryResult:
    """One row of the summary table."""

    organelle: str
    ratio: int
    topology: str
    model_id: str = ""
    status: str = "failed"
    steps: int = 0
    best_val_mse: float = math.nan
    mse: float = math.nan
    mae: float = math.nan
    r2: float = math.nan
    pearson: float = math.nan
    run_dir: str = ""
    error: str = ""


def fill_scores(row: EntryResult, config: TrainConfig, checkpoint: Path, split: str) -> None:
    """Whole-volume scores of the best checkpoint (computed once, then read back)."""
    from sparsessp_bmz.metrics import mean_metrics
    from sparsessp_bmz.scores import scores_of
    from sparsessp_bmz.training.checkpoint import load_trained

    scores = scores_of(load_trained(checkpoint), split, settings=config.data_settings)
    overall = mean_metrics(scores.values())
    for name in METRIC_NAMES:
        setattr(row, name, getattr(overall, name))


#: What the summary shows of each row (summary.csv has every field).
SHOWN = [
    Column("organelle", "organelle"),
    Column("ratio", "r", True),
    Column("topology", "topology"),
    Column("status", "status"),
    Column("steps", "steps", True),
    Column("best_val_mse", "val MSE", True),
    *metric_columns(),
    Column("error", "error"),
]


def write_summary(rows: list[EntryResult], out: Path) -> tuple[Path, Path]:
    """summary.csv (all fields) and summary.md (a readable table), written atomically."""
    records = [asdict(row) for row in rows]
    return report_summary(records, list(EntryResult.__dataclass_fields__), SHOWN, out)


def summary_table(rows: list[EntryResult]):  # type: ignore[no-untyped-def]
    """A rich table of the summary (status coloured)."""
    return console_table([asdict(row) for row in rows], SHOWN, "SparseSSP model matrix")
