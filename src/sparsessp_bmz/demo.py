"""The end-to-end demo: simulate cells, train, evaluate, export and validate bioimage.io packages.

It chains the same public functions the individual commands use (nothing demo-only), so a green
demo means the whole product works on this machine. Every stage is idempotent: simulated data is
reused, finished training runs are skipped and evaluations read back, so a re-run after a crash
only redoes what is missing.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table

from sparsessp_bmz.data.atomic import write_rows_csv, write_text
from sparsessp_bmz.errors import UserInputError

#: The demo's models: structures x ratios x topologies on top of training/demo.yaml.
DEFAULT_MATRIX = Path("training/demo_matrix.yaml")


class DemoSettings(BaseModel):
    """What the demo simulates and where it writes; the models come from the matrix file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    matrix: Path = DEFAULT_MATRIX
    work_dir: Path = Field(Path("demo_output"), description="Simulated data, runs, summary.")
    packages_dir: Path = Field(Path("packages"), description="Where validated packages land.")
    cells: int = Field(16, ge=4, description="Simulated fields of cells (files).")
    shape: tuple[int, int, int] = (48, 128, 128)
    seed: int = 0
    workers: int = Field(2, ge=1, description="Processes simulating cells.")


@dataclass
class DemoRow:
    """One model of the demo: how it trained, scored, exported and validated."""

    model_id: str
    organelle: str
    ratio: int
    topology: str
    status: str
    steps: int = 0
    r2: float = math.nan
    pearson: float = math.nan
    mse: float = math.nan
    package: str = ""
    validation: str = "not run"
    export_s: float = math.nan
    validation_s: float = math.nan
    error: str = ""


@dataclass
class DemoResult:
    """All rows plus where the summary went and how long everything took."""

    rows: list[DemoRow] = field(default_factory=list)
    summary_md: Path | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.validation == "passed" for row in self.rows)


def _simulate(settings: DemoSettings, console: Console) -> Path:
    """The demo's data set (reused when the manifest already exists)."""
    from rich.progress import Progress

    from sparsessp_bmz.data.config import SimulationSettings
    from sparsessp_bmz.data.simulate.writer import simulate

    data_dir = settings.work_dir / "data"
    manifest = data_dir / "manifest.csv"
    if manifest.is_file():
        console.print(f"reusing simulated cells in {data_dir}")
        return manifest
    structures = _matrix_organelles(settings.matrix)
    simulation = SimulationSettings(
        cells=settings.cells,
        structures=structures,
        seed=settings.seed,
        shape=settings.shape,
        workers=settings.workers,
    )
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(
            f"simulating {settings.cells} fields of cells", total=settings.cells
        )
        manifest = simulate(simulation, data_dir, lambda: progress.advance(task))
    console.print(f"simulated {settings.cells} fields ({', '.join(structures)}) in {data_dir}")
    return manifest


def _matrix_organelles(matrix: Path) -> tuple[str, ...]:
    from sparsessp_bmz.training.matrix import load_matrix

    settings, _ = load_matrix(matrix)
    return tuple(settings.organelles)


def _export(row: DemoRow, run_dir: Path, packages_dir: Path) -> None:
    """Export the best checkpoint; validation runs inside and decides whether it is placed."""
    from sparsessp_bmz.bmz.package import ExportFailedError, export_with_timing
    from sparsessp_bmz.training.checkpoint import load_trained
    from sparsessp_bmz.training.run import BEST, checkpoint_path

    trained = load_trained(checkpoint_path(run_dir, BEST))
    test_metrics = {f"test_{name}": getattr(row, name) for name in ("r2", "pearson", "mse")}
    trained = replace(trained, metrics={**trained.metrics, **test_metrics})
    try:
        archive, timing = export_with_timing(trained, packages_dir)
    except ExportFailedError as err:
        row.validation = "failed"
        row.error = f"validation failed, see {err.report_path}"
        return
    row.package = str(archive)
    row.validation = "passed"
    row.export_s = timing.build_s
    row.validation_s = timing.validate_s


def run_demo(settings: DemoSettings, console: Console) -> DemoResult:
    """Simulate -> train + evaluate (the matrix runner) -> export + validate -> summary."""
    from sparsessp_bmz.training.matrix import run_matrix

    if not settings.matrix.is_file():
        raise UserInputError(
            f"demo matrix {settings.matrix} not found; run the demo from the repository root "
            f"(where training/ lives) or pass --matrix"
        )
    # Lightning's INFO lines (devices, logger tips) would bury the demo's own progress
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    start = time.perf_counter()
    console.rule("1/3 simulate cells")
    manifest = _simulate(settings, console)

    console.rule("2/3 train and evaluate")
    overrides = [
        f"data.manifest={manifest}",
        f"trainer.output_dir={settings.work_dir / 'runs'}",
    ]

    def announce(entry, index: int, total: int) -> None:  # type: ignore[no-untyped-def]
        console.print(
            f"[bold]model {index + 1}/{total}[/]: {entry.organelle}, r={entry.ratio}, "
            f"{entry.topology}"
        )

    entries, _ = run_matrix(settings.matrix, overrides, on_entry=announce)

    console.rule("3/3 export and validate bioimage.io packages")
    result = DemoResult()
    for entry in entries:
        row = DemoRow(
            model_id=entry.model_id,
            organelle=entry.organelle,
            ratio=entry.ratio,
            topology=entry.topology,
            status=entry.status,
            steps=entry.steps,
            r2=entry.r2,
            pearson=entry.pearson,
            mse=entry.mse,
            error=entry.error,
        )
        if entry.status != "failed":
            console.print(f"exporting {entry.model_id} ...")
            _export(row, Path(entry.run_dir), settings.packages_dir)
            console.print(f"  {row.validation}: {row.package or row.error}")
        result.rows.append(row)
    result.seconds = time.perf_counter() - start
    result.summary_md = write_summary(result, settings.work_dir)
    return result


_COLUMNS = ("model_id", "status", "steps", "r2", "pearson", "mse", "validation", "package")
_COLUMNS += ("export_s", "validation_s", "error")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def write_summary(result: DemoResult, work_dir: Path) -> Path:
    """summary.csv and summary.md in the work folder (written atomically)."""
    cells = [[_cell(getattr(row, c)) for c in _COLUMNS] for row in result.rows]
    write_rows_csv(work_dir / "summary.csv", _COLUMNS, cells)
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    lines.append("")
    lines.append(f"Total time: {result.seconds:.0f} s")
    md_path = work_dir / "summary.md"
    write_text(md_path, "\n".join(lines) + "\n")
    return md_path


def summary_table(result: DemoResult) -> Table:
    """The demo's closing table."""
    table = Table(title=f"SparseSSP demo ({result.seconds:.0f} s)")
    table.add_column("package / model", no_wrap=True)
    for column in ("steps", "test R²", "Pearson r"):
        table.add_column(column, justify="right")
    table.add_column("validation")
    for row in result.rows:
        colour = "green" if row.validation == "passed" else "red"
        table.add_row(
            row.package or f"{row.model_id}: {row.error}",
            str(row.steps),
            _cell(row.r2),
            _cell(row.pearson),
            f"[{colour}]{row.validation}[/]",
        )
    return table
