"""`sparsessp-bmz validate`: bioimageio.core tests plus deepImageJ checks for any model package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def validate(
    paths: Annotated[
        list[Path], typer.Argument(help="Package folders, rdf.yaml/bioimageio.yaml files or zips.")
    ],
    report_dir: Annotated[
        Path, typer.Option(help="Where validation.json and validation.md are written.")
    ] = Path("validation_report"),
) -> None:
    """test_model for every weight format (never stop_early) and the deepImageJ rules.

    Prints one line per package; exits 1 when any package fails.
    """
    from rich.console import Console

    from sparsessp_bmz.bmz.validate import validate_package, write_reports

    console = Console()
    reports = []
    for path in paths:
        with console.status(f"validating {path}"):
            report = validate_package(path)
        reports.append(report)
        colour = "green" if report.passed else "bold red"
        console.print(f"[{colour}]{report.summary_line()}[/]", highlight=False, soft_wrap=True)
    json_path, md_path = write_reports(reports, report_dir)
    console.print(f"reports: {json_path}, {md_path}", highlight=False)
    if not all(r.passed for r in reports):
        raise typer.Exit(1)
