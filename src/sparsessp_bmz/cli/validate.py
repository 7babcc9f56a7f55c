"""`sparsessp-bmz validate`: bioimageio.core tests, consumer verdicts and bioimage.io collection
checks for any model package."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class ProfileChoice(str, Enum):
    default = "default"
    collection = "collection"


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def validate(
    paths: Annotated[
        list[Path], typer.Argument(help="Package folders, rdf.yaml/bioimageio.yaml files or zips.")
    ],
    report_dir: Annotated[
        Path, typer.Option(help="Where validation.json and validation.md are written.")
    ] = Path("validation_report"),
    profile: Annotated[
        ProfileChoice,
        typer.Option(
            help="default: fail on bioimageio.core or deepImageJ; collection: also fail on every "
            "bioimage.io collection error (warnings never fail)."
        ),
    ] = ProfileChoice.default,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Look up each github_user on GitHub (otherwise only its syntax is checked).",
        ),
    ] = False,
    trust_code: Annotated[
        bool,
        typer.Option(
            "--trust-code",
            help="Also test weight formats that run code from the package (a state-dict "
            "architecture other than this project's own network source, custom processing, "
            "Keras/TensorFlow). Without it they are reported as skipped. Only for packages "
            "whose author you trust: that code runs with your permissions.",
        ),
    ] = False,
) -> None:
    """test_model for every weight format (never stop_early), the consumers' rules (deepImageJ,
    ilastik, QuPath) and the bioimage.io collection checks.

    Prints one line per package, then its consumer verdicts and failed collection checks; exits 1
    when any package fails. A path that is no package description at all (missing, not a zip or
    UTF-8 YAML, too large, YAML that does not parse, not a mapping, no rdf.yaml inside) is one
    error line and exit code 2, before anything is validated or written.
    """
    from rich.console import Console
    from rich.markup import escape

    from sparsessp_bmz.bmz.validate import open_package, validate_package, write_reports

    for path in paths:  # every path must be a package description before any work
        open_package(path)
    console = Console()
    reports = []
    for path in paths:
        with console.status(f"validating {path}"):
            report = validate_package(
                path, profile=profile.value, online=online, trust_code=trust_code
            )
        reports.append(report)
        colour = "green" if report.passed else "bold red"
        console.print(
            f"[{colour}]{escape(report.summary_line())}[/]", highlight=False, soft_wrap=True
        )
        for fmt in report.formats:
            if fmt.skipped:
                console.print(
                    f"  [yellow]{fmt.weight_format} not run[/]: {escape('; '.join(fmt.errors))}",
                    highlight=False,
                    soft_wrap=True,
                )
        for verdict in report.consumers:
            word = "accepts" if verdict.accepted else "refuses"
            console.print(
                f"  {verdict.name} {word}: {escape(verdict.reason)}",
                highlight=False,
                soft_wrap=True,
            )
        for check in report.collection:
            if not check.passed:
                kind = "error" if check.blocking else "warning"
                console.print(
                    f"  collection {kind} {check.name}: {escape(check.message)}",
                    highlight=False,
                    soft_wrap=True,
                )
    json_path, md_path = write_reports(reports, report_dir)
    console.print(f"reports: {json_path}, {md_path}", highlight=False)
    if not all(r.passed for r in reports):
        raise typer.Exit(1)
