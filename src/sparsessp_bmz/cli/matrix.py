"""`sparsessp-bmz matrix`: train and evaluate every (organelle, ratio, topology) of a YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sparsessp_bmz.cli.options import Verbose


def register(app: typer.Typer) -> None:
    app.command("matrix")(matrix)


def matrix(
    file: Annotated[Path, typer.Argument(help="Matrix definition, e.g. training/matrix.yaml.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Dotted overrides for every entry, e.g. trainer.devices=4."),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Train, then score on whole test volumes, every entry; skip finished ones; one summary.

    A crashing entry is logged to its run folder (error.log) and marked failed; the rest go on.
    Re-run the command to retry failed and unfinished entries.
    """
    from rich.console import Console

    from sparsessp_bmz.training.matrix import run_matrix
    from sparsessp_bmz.training.matrix_summary import summary_table
    from sparsessp_bmz.training.progress import verbose_console

    console = Console()

    def announce(entry, index: int, total: int) -> None:  # type: ignore[no-untyped-def]
        name = f"{entry.organelle} r={entry.ratio} {entry.topology}"
        console.rule(f"[bold]{index + 1}/{total}[/] {name}")

    with verbose_console(verbose):
        rows, out = run_matrix(file, overrides or [], announce)
    console.print(summary_table(rows))
    failed = sum(row.status == "failed" for row in rows)
    console.print(f"summary: {out / 'summary.csv'} and {out / 'summary.md'}", highlight=False)
    if failed:
        console.print(
            f"[red]{failed} of {len(rows)} entries failed[/]; see error.log in their runs"
        )
        raise typer.Exit(1)
