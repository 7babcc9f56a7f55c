"""`sparsessp-bmz demo`: the whole product end to end on simulated cells, in minutes on a laptop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sparsessp_bmz.cli.options import Verbose


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    matrix: Annotated[
        list[Path] | None,
        typer.Option(
            help="Models to train (structures x ratios x topologies); repeat for several. "
            "Default: training/demo_matrix.yaml and training/plane_matrix.yaml."
        ),
    ] = None,
    work_dir: Annotated[Path, typer.Option(help="Simulated data, runs and summary.")] = Path(
        "demo_output"
    ),
    packages_dir: Annotated[Path, typer.Option(help="Where validated packages land.")] = Path(
        "packages"
    ),
    cells: Annotated[int, typer.Option(help="Simulated fields of cells.")] = 16,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 0,
    verbose: Verbose = False,
) -> None:
    """Simulate cells, train, evaluate, export and validate bioimage.io packages, then summarise.

    Re-running reuses the simulated data and finished runs, so only missing work is redone.
    """
    from rich.console import Console

    from sparsessp_bmz.demo import DEFAULT_MATRICES, DemoSettings, run_demo, summary_table
    from sparsessp_bmz.training.progress import verbose_console

    console = Console()
    settings = DemoSettings(
        matrices=tuple(matrix or DEFAULT_MATRICES),
        work_dir=work_dir,
        packages_dir=packages_dir,
        cells=cells,
        seed=seed,
    )
    with verbose_console(verbose):
        result = run_demo(settings, console)
    console.print(summary_table(result))
    console.print(f"summary: {result.summary_md}; packages and index: {settings.packages_dir}/")
    if not result.passed:
        raise typer.Exit(code=1)
