"""`sparsessp-bmz nets`: the network family at a glance, with the paper's MACs beside ours."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("nets")(nets)


def nets(
    ratio: Annotated[int, typer.Option(help="Sparsity ratio r.")] = 2,
    patch: Annotated[str, typer.Option(help="Target patch DxHxW.")] = "32x128x128",
    width: Annotated[float, typer.Option(help="Channel multiplier (1 = paper width).")] = 1.0,
    units: Annotated[int, typer.Option(help="U, the uniform 2D channel count.")] = 256,
    embedding: Annotated[
        str, typer.Option(help="Task embedding: none, dodnet, repmode, tsns (comma list) or all.")
    ] = "none",
) -> None:
    """Print parameters and MACs of every valid topology x interpolation x projection.

    Multi-task rows (12 tasks, as in the paper) also give the MACs of the baked per-organelle
    network that a package ships.
    """
    from pydantic import ValidationError
    from rich.console import Console
    from rich.table import Table

    from sparsessp_bmz.cli.parsing import parse_choices, parse_ratio, parse_shape
    from sparsessp_bmz.errors import UserInputError
    from sparsessp_bmz.nets.complexity import all_valid_specs, measure
    from sparsessp_bmz.spec import EMBEDDINGS, ModelSpec

    parse_ratio(ratio, "--ratio")
    shape = parse_shape(patch, "--patch")
    embeddings = parse_choices(embedding, EMBEDDINGS, "--embedding")
    if not (width > 0 and units >= 1):
        raise UserInputError(
            f"--width must be > 0 and --units at least 1, got --width {width:g} --units {units}"
        )
    table = Table(title=f"SparseSSP networks, r={ratio}, patch {patch}, width {width}, U={units}")
    for column in ("embedding", "topology", "interp.", "proj."):
        table.add_column(column)
    for column in ("params (M)", "GMACs", "baked GMACs", "paper GMACs", "ours/paper"):
        table.add_column(column, justify="right")
    specs = all_valid_specs(
        ratio=ratio, patch=shape, width=width, units=units, embeddings=embeddings
    )
    if not specs:
        # say why the default network refuses these settings instead of printing an empty table
        try:
            ModelSpec(organelle="any", ratio=ratio, patch=shape, width=width, units=units)
            reason = "no topology accepts them"
        except ValidationError as err:
            reason = str(err.errors()[0]["msg"]).removeprefix("Value error, ")
        raise UserInputError(
            f"no SparseSSP network fits r={ratio} with --patch {patch} ({reason}); change --patch "
            "(depth a multiple of r, sizes the levels can halve) or --ratio"
        )
    for spec in specs:
        row = measure(spec)
        paper = row.paper_gmacs
        table.add_row(
            spec.embedding,
            spec.topology,
            spec.interpolation,
            spec.projection if spec.topology in ("2to3d", "3to2d") else "-",
            f"{row.parameters / 1e6:.2f}",
            f"{row.gmacs:.2f}",
            f"{row.baked_gmacs:.2f}",
            "" if paper is None else f"{paper:.2f}",
            "" if paper is None else f"{row.gmacs / paper:.2f}",
        )
    Console().print(table)
