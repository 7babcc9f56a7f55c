"""One row per matrix entry and the summary written from the rows.

The matrix (`training.matrix`) decides what runs where; this module says what a finished entry
reports (its scores on whole volumes of a split) and how the rows become summary.csv/md and a
console table. `fill_scores` is the one place a row gets its scores, whether the entry just
trained or `matrix collect` rebuilds the row from its run folder. Beside the paper's metrics a row
carries a few key columns of `metrics.HeldOutScores` (R² in the foreground, object F1 at IoU 0.5,
the baselines' R²; summary.csv has them all); `write_summary` also draws test R² against r per
topology with the baselines (the paper's Fig. 4).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sparsessp_bmz.metrics import METRIC_NAMES, column
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
    fg_r2: float = math.nan
    f1_50: float = math.nan
    mean_r2: float = math.nan
    ridge_r2: float = math.nan


#: The key columns of `HeldOutScores` a row carries (`EntryResult` fields of the same keys).
KEY_COLUMNS = (
    column("r2", "fg"),
    column("f1_50"),
    column("r2", "", "mean"),
    column("r2", "", "ridge"),
)


def fill_scores(row: EntryResult, config: TrainConfig, checkpoint: Path, split: str) -> None:
    """Whole-volume scores of the best checkpoint (computed once, then read back)."""
    from sparsessp_bmz.metrics import mean_metrics
    from sparsessp_bmz.scores import scores_of
    from sparsessp_bmz.training.checkpoint import load_trained

    scores = scores_of(load_trained(checkpoint), split, settings=config.data_settings)
    overall = mean_metrics(scores.values())
    for name in METRIC_NAMES:
        setattr(row, name, getattr(overall, name))
    columns = [held_out.columns() for held_out in scores.values()]
    for key, _ in KEY_COLUMNS:  # mean over structures, as the paper's `All` row
        setattr(row, key, _mean([c[key] for c in columns]))


def _mean(values: list[float]) -> float:
    """Mean of the measured (finite) values; NaN when none is (e.g. F1 of non-blob structures)."""
    found = [v for v in values if math.isfinite(v)]
    return float(np.mean(found)) if found else math.nan


#: What the summary shows of each row (summary.csv has every field).
SHOWN = [
    Column("organelle", "organelle"),
    Column("ratio", "r", True),
    Column("topology", "topology"),
    Column("status", "status"),
    Column("steps", "steps", True),
    Column("best_val_mse", "val MSE", True),
    *metric_columns(),
    *(Column(key, label, True) for key, label in KEY_COLUMNS),
    Column("error", "error"),
]
#: The console's table leaves out what summary.md has room for (MAE, Pearson r, R² fg, mean R²).
CONSOLE = [c for c in SHOWN if c.key not in ("mae", "pearson", "fg_r2", "mean_r2")]
#: The report of test R² against r per topology, and its picture, beside summary.md.
REPORT_MD = "report.md"
R2_FIGURE = "r2_vs_ratio.png"


def write_summary(rows: list[EntryResult], out: Path) -> tuple[Path, Path]:
    """summary.csv (all fields) and summary.md (a readable table), written atomically; with
    scored rows also the report (report.md and r2_vs_ratio.png, see `write_ratio_report`)."""
    records = [asdict(row) for row in rows]
    write_ratio_report(rows, out)
    return report_summary(records, list(EntryResult.__dataclass_fields__), SHOWN, out)


def write_ratio_report(rows: list[EntryResult], out: Path) -> Path | None:
    """report.md: test R² against r per topology beside the baselines, as a picture
    (r2_vs_ratio.png, the paper's Fig. 4) and a table (mean over structures); None (nothing
    written) while no row has scores."""
    from sparsessp_bmz.data.atomic import write_text
    from sparsessp_bmz.figures import RatioPoint, r2_against_ratio
    from sparsessp_bmz.reporting import cell

    scored = [r for r in rows if math.isfinite(r.r2)]
    if not scored:
        return None
    points = [
        RatioPoint(r.topology, r.ratio, r.r2, {"mean": r.mean_r2, "ridge": r.ridge_r2})
        for r in scored
    ]
    organelles = ", ".join(sorted({r.organelle for r in scored}))
    r2_against_ratio(points, f"test R² against r ({organelles})", out / R2_FIGURE)
    labels = [label for _, label in (column("r2"), *KEY_COLUMNS)]
    lines = [
        f"# Test R² against the sparsity ratio ({organelles})",
        "",
        f"![test R² against r per topology, baselines dashed]({R2_FIGURE})",
        "",
        "Mean over structures of each (topology, r); the baselines are fitted per structure "
        "and ratio on the training split (`metrics.PREDICTORS`).",
        "",
        "| topology | r | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    keys = ["r2", *(key for key, _ in KEY_COLUMNS)]
    for topology, ratio in sorted({(r.topology, r.ratio) for r in scored}):
        group = [r for r in scored if (r.topology, r.ratio) == (topology, ratio)]
        means = [_mean([getattr(r, k) for r in group]) for k in keys]
        lines.append(f"| {topology} | {ratio} | " + " | ".join(cell(m) for m in means) + " |")
    path = out / REPORT_MD
    write_text(path, "\n".join(lines) + "\n")
    return path


def summary_table(rows: list[EntryResult]):  # type: ignore[no-untyped-def]
    """A rich table of the summary (status coloured)."""
    return console_table([asdict(row) for row in rows], CONSOLE, "SparseSSP model matrix")
