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
    variants: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated package variants: standard (sparse stack in, r times deeper "
            "out; bioimageio.core, deepImageJ), dense (target-grid stack in, same shape out; "
            "ilastik), plane (2D, QuPath; plane models only). Default: standard, or plane for "
            "plane models."
        ),
    ] = None,
    metadata: Annotated[
        Path | None,
        typer.Option(
            help="YAML file with your name, authors, maintainers, licence, training data ... "
            "(see rdf_templates/metadata_example.yaml)."
        ),
    ] = None,
) -> None:
    """Build, validate (bioimageio.core, deepImageJ, ilastik, QuPath checks) and place packages.

    A multi-task checkpoint gives one package per structure (and variant), each with its task
    baked in. The model card carries the held-out test metrics: the run's evaluation of the
    checkpoint, computed once here if the run has none. A package that fails validation is not
    placed; its report is (OUT/reports/<id>.md). An OUT that is a file or cannot be written, or
    where a package would replace something of another kind, is refused before any work; work
    folders left in OUT by an interrupted export are removed.
    """
    from rich.console import Console

    from sparsessp_bmz.bmz.export import PlannedPackage, export, plan_packages
    from sparsessp_bmz.bmz.metadata import load_metadata, placeholder_fields
    from sparsessp_bmz.bmz.package import ExportedPackage, ExportFailedError, check_out_dir
    from sparsessp_bmz.bmz.variants import parse_variants
    from sparsessp_bmz.training.checkpoint import load_trained

    console = Console()
    check_out_dir(out)
    wanted = parse_variants(variants) if variants is not None else None
    publisher = load_metadata(metadata) if metadata is not None else None
    models = [load_trained(checkpoint) for checkpoint in checkpoints]
    planned = []
    for trained in models:  # refuse a variant that does not fit before building anything
        planned += plan_packages(trained, wanted)
    check_out_dir(out, tuple(item.package_id for item in planned))
    placeholders = placeholder_fields(publisher)
    if placeholders:
        console.print(
            f"[yellow]placeholders[/]: {', '.join(placeholders)} still at the project's "
            "defaults; set them with --metadata FILE (rdf_templates/metadata_example.yaml) "
            "before uploading to bioimage.io",
            highlight=False,
        )
    status = console.status("")

    def start(item: PlannedPackage) -> None:
        status.update(f"exporting {item.package_id} (build, then bioimageio test)")

    def done(result: ExportedPackage | ExportFailedError) -> None:
        if isinstance(result, ExportFailedError):
            console.print(f"[bold red]FAIL[/] {result}", highlight=False)
            return
        timing = result.timing
        console.print(
            f"[green]PASS[/] {result.archive} (build {timing.build_s:.1f} s, "
            f"validation {timing.validate_s:.1f} s)",
            highlight=False,
        )

    failed = 0
    with status:
        for trained in models:
            status.update(f"held-out test scores of {trained.spec.model_id}")
            outcome = export(
                trained, out, variants=wanted, metadata=publisher, on_start=start, on_done=done
            )
            failed += len(outcome.failures)
    console.print(f"index: {out / 'index.md'}", highlight=False)
    if failed:
        raise typer.Exit(1)
