"""`sparsessp-bmz export`: checkpoints -> validated bioimage.io packages under packages/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    checkpoints: Annotated[list[Path], typer.Argument(help="Trained checkpoint(s) (.ckpt).")],
    out: Annotated[
        Path, typer.Option(help="Folder of packages (gets <id>/, <id>.zip, index).")
    ] = Path("packages"),
) -> None:
    """Build, validate (bioimageio.core + deepImageJ checks) and place one package per checkpoint.

    A multi-task checkpoint gives one package per structure, each with its task baked in. A
    package that fails validation is not placed; its report is (OUT/reports/<id>.md).
    """
    from rich.console import Console

    from sparsessp_bmz.bmz.package import ExportFailedError, export_with_timing
    from sparsessp_bmz.training.checkpoint import load_trained

    console = Console()
    failed = 0
    models = []
    for checkpoint in checkpoints:
        loaded = load_trained(checkpoint)
        # a multi-task network leaves as one baked package per structure it learned
        models += [loaded.for_task(task) for task in loaded.spec.tasks] or [loaded]
    for trained in models:
        with console.status(f"exporting {trained.spec.model_id} (build, then bioimageio test)"):
            try:
                path, timing = export_with_timing(trained, out)
            except ExportFailedError as err:
                console.print(f"[bold red]FAIL[/] {err}", highlight=False)
                failed += 1
                continue
        console.print(
            f"[green]PASS[/] {path} (build {timing.build_s:.1f} s, "
            f"validation {timing.validate_s:.1f} s)",
            highlight=False,
        )
    console.print(f"index: {out / 'index.md'}", highlight=False)
    if failed:
        raise typer.Exit(1)
