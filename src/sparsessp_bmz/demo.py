"""The end-to-end demo: simulate cells, train, evaluate, export and validate bioimage.io packages.

It chains the same public functions the individual commands use (nothing demo-only), so a green
demo means the whole product works on this machine. Every stage is idempotent: simulated data is
reused, finished training runs are skipped and evaluations read back, so a re-run after a crash
only redoes what is missing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table

from sparsessp_bmz.data.atomic import write_rows_csv, write_text
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.spec import Topology

#: The demo's models: structures x ratios x topologies on top of training/demo.yaml.
DEFAULT_MATRIX = Path("training/demo_matrix.yaml")
#: The demo's plane model (one TL plane -> one fluorescence plane), exported for QuPath.
DEFAULT_PLANE = Path("training/plane.yaml")


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
    dense_for: tuple[Topology, ...] = Field(
        ("3to2d",), description="Topologies whose models also get a dense-grid (ilastik) package."
    )
    plane: Path | None = Field(DEFAULT_PLANE, description="Plane preset to train and export.")
    plane_overrides: tuple[str, ...] = Field((), description="Overrides of the plane preset.")


@dataclass
class DemoRow:
    """One package of the demo: how its model trained and scored, how it exported and validated."""

    model_id: str
    variant: str
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
    run_dir: str = ""


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


def _export(
    run_dir: Path, variants: tuple[str, ...], packages_dir: Path, base: DemoRow
) -> list[DemoRow]:
    """Export the best checkpoint in each variant; validation decides what is placed."""
    from sparsessp_bmz.bmz.export import export
    from sparsessp_bmz.bmz.package import ExportedPackage, ExportFailedError
    from sparsessp_bmz.training.checkpoint import load_trained
    from sparsessp_bmz.training.run import BEST, checkpoint_path

    trained = load_trained(checkpoint_path(run_dir, BEST))
    rows: list[DemoRow] = []

    def done(result: ExportedPackage | ExportFailedError) -> None:
        if isinstance(result, ExportFailedError):
            row = replace(base, variant="?", validation="failed")
            row.model_id = result.report.model_id or base.model_id
            row.error = f"validation failed, see {result.report_path}"
        else:
            row = replace(base, model_id=result.facts.package_id, variant=result.facts.variant)
            row.package, row.validation = str(result.archive), "passed"
            row.export_s, row.validation_s = result.timing.build_s, result.timing.validate_s
        rows.append(row)

    export(trained, packages_dir, variants=variants, on_done=done)  # type: ignore[arg-type]
    return rows


def _train_plane(settings: DemoSettings, manifest: Path, console: Console) -> DemoRow:
    """Train and score the plane model (the matrix covers volume models only)."""
    from sparsessp_bmz.metrics import mean_metrics
    from sparsessp_bmz.test_scores import scores_of
    from sparsessp_bmz.training.checkpoint import load_trained
    from sparsessp_bmz.training.config import load_config
    from sparsessp_bmz.training.run import train

    assert settings.plane is not None
    overrides = [
        f"data.manifest={manifest}",
        f"trainer.output_dir={settings.work_dir / 'runs'}",
        *settings.plane_overrides,
    ]
    config = load_config(settings.plane, overrides)
    console.print(f"[bold]plane model[/]: {config.model.organelle}, {config.model.model_id}")
    result = train(config)
    scores = scores_of(load_trained(result.best_checkpoint), settings=config.data_settings)
    overall = mean_metrics(scores.values())
    return DemoRow(
        model_id=config.model.model_id,
        variant="plane",
        status=result.status,
        steps=result.global_step,
        r2=overall.r2,
        pearson=overall.pearson,
        mse=overall.mse,
        run_dir=str(config.run_dir()),
    )


def run_demo(settings: DemoSettings, console: Console) -> DemoResult:
    """Simulate -> train + evaluate (the matrix runner) -> export + validate -> summary."""
    from sparsessp_bmz.training.matrix import run_matrix

    for path in (settings.matrix, settings.plane):
        if path is not None and not path.is_file():
            raise UserInputError(
                f"demo preset {path} not found; run the demo from the repository root "
                f"(where training/ lives) or pass --matrix"
            )
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
    models: list[tuple[DemoRow, tuple[str, ...]]] = []
    for entry in entries:
        row = DemoRow(
            model_id=entry.model_id,
            variant="standard",
            status=entry.status,
            steps=entry.steps,
            r2=entry.r2,
            pearson=entry.pearson,
            mse=entry.mse,
            error=entry.error,
            run_dir=entry.run_dir,
        )
        dense = ("dense",) if entry.topology in settings.dense_for else ()
        models.append((row, ("standard", *dense)))
    if settings.plane is not None:
        models.append((_train_plane(settings, manifest, console), ("plane",)))

    console.rule("3/3 export and validate bioimage.io packages")
    result = DemoResult()
    for row, variants in models:
        if row.status == "failed":
            result.rows.append(row)
            continue
        console.print(f"exporting {row.model_id} ({', '.join(variants)}) ...")
        for package in _export(Path(row.run_dir), variants, settings.packages_dir, row):
            console.print(f"  {package.validation}: {package.package or package.error}")
            result.rows.append(package)
    result.seconds = time.perf_counter() - start
    result.summary_md = write_summary(result, settings.work_dir)
    return result


_COLUMNS = ("model_id", "variant", "status", "steps", "r2", "pearson", "mse", "validation")
_COLUMNS += ("package",)
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
