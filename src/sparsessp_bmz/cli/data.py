"""`sparsessp-bmz simulate` and `sparsessp-bmz split`: make a synthetic data set, fix its splits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sparsessp_bmz.errors import UserInputError


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
    app.command("split")(split)


def simulate(
    out: Annotated[Path, typer.Argument(help="Folder to write images/ and manifest.csv into.")],
    cells: Annotated[int, typer.Option(help="Number of fields of cells (image files).")] = 24,
    structures: Annotated[
        str, typer.Option(help="Comma-separated structures; default: all the simulator knows.")
    ] = "",
    seed: Annotated[int, typer.Option(help="Same seed, same data, on any machine.")] = 0,
    shape: Annotated[str, typer.Option(help="Stack size DxHxW at 0.29 um voxels.")] = "48x160x160",
    workers: Annotated[int, typer.Option(help="Processes generating fields in parallel.")] = 1,
    memory_limit: Annotated[
        float | None,
        typer.Option(
            metavar="GB",
            help="Largest memory the fields being simulated may take together (default: "
            "SPARSESSP_MEMORY_LIMIT_GB, else half of the memory available now).",
        ),
    ] = None,
) -> None:
    """Simulate cells whose transmitted light carries their structures, with a manifest CSV."""
    from pydantic import ValidationError
    from rich.progress import Progress

    from sparsessp_bmz.cli.parsing import parse_shape
    from sparsessp_bmz.data.config import SIMULATED_STRUCTURES, SimulationSettings
    from sparsessp_bmz.data.simulate.writer import check_simulation
    from sparsessp_bmz.data.simulate.writer import simulate as run
    from sparsessp_bmz.guards import memory_limit_option

    names = tuple(n.strip() for n in structures.split(",") if n.strip()) or SIMULATED_STRUCTURES
    try:
        settings = SimulationSettings(
            cells=cells,
            structures=names,
            seed=seed,
            shape=parse_shape(shape, "--shape"),
            workers=workers,
        )
    except ValidationError as err:
        first = err.errors()[0]
        option = f"--{first['loc'][0]}" if first["loc"] else "simulate"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UserInputError(f"{option}: {message}") from err
    with memory_limit_option(memory_limit):
        # memory, disk and the folder are checked before anything is created
        check_simulation(settings, out)
        with Progress() as progress:
            task = progress.add_task(f"simulating {cells} fields", total=cells)
            manifest = run(settings, out, lambda: progress.advance(task))
    typer.echo(f"wrote {manifest}")


def split(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV (either layout).")],
    seed: Annotated[int, typer.Option(help="Split seed (RepMode: 42).")] = 42,
) -> None:
    """Write <manifest>.splits.csv next to the manifest (75/25 train/test, then 90/10 train/val)."""
    from collections import Counter

    from sparsessp_bmz.data.config import DataSettings
    from sparsessp_bmz.data.splits import load_splits

    settings = DataSettings(manifest=manifest, split_seed=seed)
    try:
        rows = load_splits(settings)
    except OSError as err:
        raise UserInputError(
            f"cannot write the splits table {settings.splits_path}: {err.strerror or err}; "
            "nothing was written: free disk space or make the manifest's folder writable"
        ) from err
    counts = Counter((row.structure, row.split) for row in rows)
    for structure in sorted({row.structure for row in rows}):
        parts = ", ".join(f"{s} {counts[structure, s]}" for s in ("train", "val", "test"))
        typer.echo(f"{structure}: {parts}")
    typer.echo(f"splits in {settings.splits_path}")
