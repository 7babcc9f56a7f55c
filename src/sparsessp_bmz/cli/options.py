"""Command-line options that several commands share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

#: `--verbose` of every command that trains (train, matrix, demo).
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Show Lightning's own output in every training (device banner, model summary, its "
        "progress bar).",
    ),
]
