"""The end-to-end demo: simulate cells, train, evaluate, export and validate bioimage.io packages.

It chains the same public functions the individual commands use (nothing demo-only), so a green
demo means the whole product works on this machine. Every stage is idempotent: simulated data is
reused, finished training runs are skipped and evaluations read back, so a re-run after a crash
only redoes what is missing.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.reporting import Column, console_table, metric_columns
from sparsessp_bmz.reporting import write_summary as report_summary
from sparsessp_bmz.spec import Topology
from sparsessp_bmz.training.matrix_summary import KEY_COLUMNS, EntryResult

#: The demo's models: structures x ratios x topologies on top of a preset, one matrix per preset
#: (volume models on training/demo.yaml; the plane model for QuPath on training/plane.yaml).
DEFAULT_MATRICES = (Path("training/demo_matrix.yaml"), Path("training/plane_matrix.yaml"))


class DemoSettings(BaseModel):
    """What the demo simulates and where it writes; the models come from the matrix files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    matrices: tuple[Path, ...] = Field(DEFAULT_MATRICES, min_length=1)
    work_dir: Path = Field(Path("demo_output"), description="Simulated data, runs, summary.")
    packages_dir: Path = Field(Path("packages"), description="Where validated packages land.")
    cells: int = Field(16, ge=4, description="Simulated fields of cells (files).")
    shape: tuple[int, int, int] = (48, 128, 128)
    seed: int = 0
    workers: int = Field(2, ge=1, description="Processes simulating cells.")
    dense_for: tuple[Topology, ...] = Field(
        ("3to2d",), description="Topologies whose models also get a dense-grid (ilastik) package."
    )


@dataclass
class DemoRow(EntryResult):
    """One package of the demo: its model's matrix row plus how the package exported and
    validated."""

    package_id: str = ""
    variant: str = ""
    package: str = ""
    validation: str = "not run"
    export_s: float = math.nan
    validation_s: float = math.nan


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
    structures = _matrix_organelles(settings.matrices)
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


def _matrix_organelles(matrices: tuple[Path, ...]) -> tuple[str, ...]:
    from sparsessp_bmz.training.matrix import load_matrix

    organelles = [name for path in matrices for name in load_matrix(path)[0].organelles]
    return tuple(dict.fromkeys(organelles))


def _export(entry: EntryResult, dense: bool, packages_dir: Path) -> list[DemoRow]:
    """Export the entry's best checkpoint (plus its dense-grid variant if `dense`); validation
    decides what is placed."""
    from sparsessp_bmz.bmz.export import export
    from sparsessp_bmz.bmz.package import ExportedPackage, ExportFailedError
    from sparsessp_bmz.bmz.variants import default_variants
    from sparsessp_bmz.training.checkpoint import load_trained
    from sparsessp_bmz.training.run import BEST, checkpoint_path

    trained = load_trained(checkpoint_path(Path(entry.run_dir), BEST))
    variants = default_variants(trained.spec) + (("dense",) if dense else ())
    rows: list[DemoRow] = []

    def done(result: ExportedPackage | ExportFailedError) -> None:
        row = DemoRow(**asdict(entry))
        if isinstance(result, ExportFailedError):
            row.package_id = result.report.model_id or entry.model_id
            row.validation = "failed"
            row.error = f"validation failed, see {result.report_path}"
        else:
            row.package_id, row.variant = result.facts.package_id, result.facts.variant
            row.package, row.validation = str(result.archive), "passed"
            row.export_s, row.validation_s = result.timing.build_s, result.timing.validate_s
        rows.append(row)

    export(trained, packages_dir, variants=variants, on_done=done)  # type: ignore[arg-type]
    return rows


def run_demo(settings: DemoSettings, console: Console) -> DemoResult:
    """Simulate -> train + evaluate (the matrix runner) -> export + validate -> summary."""
    from sparsessp_bmz.training.matrix import run_matrix

    for path in settings.matrices:
        if not path.is_file():
            raise UserInputError(
                f"demo matrix {path} not found; run the demo from the repository root "
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
    entries: list[EntryResult] = []
    for matrix in settings.matrices:

        def announce(entry, index: int, total: int, name: str = matrix.stem) -> None:  # type: ignore[no-untyped-def]
            console.print(
                f"[bold]{name} {index + 1}/{total}[/]: {entry.organelle}, r={entry.ratio}, "
                f"{entry.topology}"
            )

        entries += run_matrix(matrix, overrides, on_entry=announce)[0]

    console.rule("3/3 export and validate bioimage.io packages")
    result = DemoResult()
    for entry in entries:
        if entry.status == "failed":
            result.rows.append(DemoRow(**asdict(entry), validation="failed"))
            continue
        console.print(f"exporting {entry.model_id} ...")
        dense = entry.topology in settings.dense_for
        for row in _export(entry, dense, settings.packages_dir):
            console.print(f"  {row.validation}: {row.package or row.error}")
            result.rows.append(row)
    result.seconds = time.perf_counter() - start
    result.summary_md = write_summary(result, settings.work_dir)
    return result


#: What the demo's summary shows of each package (summary.csv has every field).
SHOWN = [
    Column("package_id", "package"),
    Column("variant", "variant"),
    Column("status", "training"),
    Column("steps", "steps", True),
    *[c for c in metric_columns("test ") if c.key in ("r2", "pearson")],
    *(Column(key, label, True) for key, label in KEY_COLUMNS),
    Column("validation", "validation"),
    Column("export_s", "build s", True),
    Column("validation_s", "validate s", True),
    Column("error", "error"),
]


def write_summary(result: DemoResult, work_dir: Path) -> Path:
    """summary.csv and summary.md in the work folder (written atomically)."""
    records = [asdict(row) for row in result.rows]
    fields = list(DemoRow.__dataclass_fields__)
    footer = f"Total time: {result.seconds:.0f} s"
    return report_summary(records, fields, SHOWN, work_dir, footer)[1]


#: The console's closing table fits 80 columns (package, steps, test R², ridge R², validation);
#: summary.md has the rest.
CONSOLE = [SHOWN[0], SHOWN[3], SHOWN[4], SHOWN[9], SHOWN[10]]


def summary_table(result: DemoResult):  # type: ignore[no-untyped-def]
    """The demo's closing table."""
    title = f"SparseSSP demo ({result.seconds:.0f} s)"
    return console_table(
        [asdict(row) for row in result.rows], CONSOLE, title, coloured=("validation",)
    )
