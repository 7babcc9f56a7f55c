"""The `sparsessp-bmz` command line.

Each sub-command lives in its own module with a `register(app)` function, so commands stay small
and their heavy imports (Lightning, bioimageio.core, bioio) happen only when that command runs.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from sparsessp_bmz.errors import UserInputError

COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "data",
    "check",
    "train",
    "matrix",
    "predict",
    "evaluate",
    "export",
    "validate",
    "nets",
)

app = typer.Typer(
    name="sparsessp-bmz",
    help="Train SparseSSP models and publish them as BioImage Model Zoo packages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Train SparseSSP models and publish them as BioImage Model Zoo packages."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"sparsessp_bmz.cli.{_name}").register(app)


def main() -> None:
    """Console-script entry point: user errors become one red line and exit code 2."""
    try:
        app()
    except UserInputError as err:
        # escaped: a message quoting a file name such as `[/]x` must not be read as markup
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        sys.exit(2)
