"""`sparsessp-bmz check`: open every row of a manifest as training would, and print a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sparsessp_bmz.errors import UserInputError


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def _voxel(text: str, option: str) -> tuple[float, float, float]:
    """'0.29,0.1,0.1' -> (0.29, 0.1, 0.1), positive micrometres."""
    try:
        values = tuple(float(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 < value < float("inf") for value in values):
        raise UserInputError(
            f"{option} must be three positive sizes z,y,x in micrometres, e.g. 0.29,0.1,0.1; "
            f"got {text!r}"
        )
    return values  # type: ignore[return-value]


def check(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV (either layout).")],
    structures: Annotated[
        str, typer.Option(help="Comma-separated structures to check (default: all of them).")
    ] = "",
    patch: Annotated[
        str,
        typer.Option(help="Training patch DxHxW the volumes must hold after resampling."),
    ] = "",
    fallback_voxel_size: Annotated[
        str,
        typer.Option(help="Voxel size z,y,x in um for files that record none (plain TIFF)."),
    ] = "",
    voxel_size: Annotated[
        str, typer.Option(help="Grid z,y,x in um the volumes are resampled to.")
    ] = "0.29,0.29,0.29",
) -> None:
    """Open every image of a manifest as training would; a table, exit code 1 if one is bad.

    Checks per row: file readable, shape, channels, voxel size (or --fallback-voxel-size),
    finite and not constant values, big enough for --patch after resampling. Volumes above
    512 MB (float32) are checked from their header only. Exit code 0 when every image is usable.
    """
    from rich.console import Console
    from rich.table import Table

    from sparsessp_bmz.cli.parsing import parse_shape
    from sparsessp_bmz.data.check import check_rows
    from sparsessp_bmz.data.config import DataSettings
    from sparsessp_bmz.data.manifest import read_manifest, select_structures

    wanted = tuple(name.strip() for name in structures.split(",") if name.strip()) or None
    settings = DataSettings(
        manifest=manifest.resolve(),
        voxel_size_um=_voxel(voxel_size, "--voxel-size"),
        fallback_voxel_size_um=(
            _voxel(fallback_voxel_size, "--fallback-voxel-size") if fallback_voxel_size else None
        ),
    )
    rows = select_structures(read_manifest(settings.manifest), wanted)
    size = parse_shape(patch, "--patch") if patch else None
    reports = check_rows(rows, settings, patch=size)

    table = Table(title=f"{settings.manifest}", title_justify="left")
    for column in ("line", "structure", "file", "shape (z, y, x)", "voxel size (um)", "status"):
        table.add_column(column, overflow="fold")
    folder = settings.manifest.parent
    for report in reports:
        row = report.row
        files = dict.fromkeys([row.signal_path, row.target_path])  # one file in the CZI layout
        names = " | ".join(
            str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)
            for path in files
        )
        shape = "x".join(map(str, report.shape)) if report.shape else "?"
        if report.voxel_size_um is None:
            voxel = "unknown"
        else:
            voxel = ", ".join(f"{value:g}" for value in report.voxel_size_um)
            voxel += " (fallback)" if report.voxel_from_fallback else ""
        status = report.status if report.ok else f"[red]{report.status}[/]"
        table.add_row(str(row.line), row.structure, names, shape, voxel, status)
    console = Console()
    console.print(table)
    bad = sum(not report.ok for report in reports)
    if bad:
        console.print(
            f"[red]{bad} of {len(reports)} images are unusable[/]; fix them or remove their rows",
            highlight=False,
        )
        raise typer.Exit(1)
    console.print(f"all {len(reports)} images are usable", highlight=False)
