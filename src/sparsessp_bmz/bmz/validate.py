"""Validation of any bioimage.io model package: bioimageio.core plus deepImageJ's needs.

`test_model` runs once per weight format (never with `stop_early`, which skips checks and still
says "passed"), so a report says which format fails. The deepImageJ checks read the raw YAML as
written, because bioimageio.core upgrades what it loads and would hide exactly what deepImageJ
trips over.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from sparsessp_bmz.bmz.checks import CheckResult, FileReader
from sparsessp_bmz.bmz.deepimagej import run_checks
from sparsessp_bmz.errors import UserInputError

RDF_NAMES = ("bioimageio.yaml", "rdf.yaml")
REPORT_JSON = "validation.json"
REPORT_MD = "validation.md"


class FormatResult(BaseModel):
    """bioimageio.core `test_model` for one weight format."""

    weight_format: str
    status: str
    errors: list[str]
    seconds: float


class PackageReport(BaseModel):
    """Everything we know about one package after validating it."""

    source: str
    model_id: str | None = None
    name: str | None = None
    formats: list[FormatResult] = []
    checks: list[CheckResult] = []
    error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and bool(self.formats)
            and all(f.status == "passed" for f in self.formats)
            and all(c.passed for c in self.checks)
        )

    def summary_line(self) -> str:
        """One line: verdict, id, per-format status, deepImageJ checks, time, source."""
        verdict = "PASS" if self.passed else "FAIL"
        formats = ", ".join(
            f"{f.weight_format} {'ok' if f.status == 'passed' else f.status}" for f in self.formats
        )
        passed = sum(c.passed for c in self.checks)
        detail = self.error or f"{formats}; deepImageJ {passed}/{len(self.checks)}"
        return f"{verdict} {self.model_id or '?'} ({detail}) {self.seconds:.1f} s  {self.source}"


def _rdf_name(names: Sequence[str]) -> str | None:
    for name in RDF_NAMES:
        if name in names:
            return name
    return next((n for n in names if n.endswith(".bioimageio.yaml") and "/" not in n), None)


def _open(path: Path) -> tuple[dict[str, Any], FileReader, str]:
    """(raw RDF, reader of package-relative files, source to hand to bioimageio.core)."""
    if not path.exists():
        raise UserInputError(f"{path} does not exist; give a package folder, rdf.yaml or .zip")
    if path.is_dir():
        name = _rdf_name([p.name for p in path.iterdir()])
        if name is None:
            raise UserInputError(f"{path} holds no rdf.yaml or bioimageio.yaml")
        return _open(path / name)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = _rdf_name(archive.namelist())
            if name is None:
                raise UserInputError(f"{path} holds no rdf.yaml or bioimageio.yaml at its root")
            rdf = yaml.safe_load(archive.read(name))

        def read_zip(member: str) -> bytes:
            with zipfile.ZipFile(path) as archive:
                return archive.read(member)

        return rdf, read_zip, str(path)
    rdf = yaml.safe_load(path.read_text(encoding="utf-8"))

    def read_file(member: str) -> bytes:
        if "://" in member:
            raise FileNotFoundError(f"{member} is remote; validation runs offline")
        return (path.parent / member).read_bytes()

    return rdf, read_file, str(path)


def _messages(summary: Any) -> list[str]:
    messages = []
    for detail in summary.details:
        if detail.status == "failed":
            messages += [f"{detail.name}: {e.msg}" for e in detail.errors] or [detail.name]
    return messages


def _test_format(source: str, weight_format: str | None) -> FormatResult:
    from bioimageio.core import test_model

    start = time.perf_counter()
    summary = test_model(source, weight_format=weight_format, stop_early=False)  # type: ignore[arg-type]
    return FormatResult(
        weight_format=weight_format or "all",
        status=summary.status,
        errors=_messages(summary),
        seconds=time.perf_counter() - start,
    )


def validate_package(path: Path) -> PackageReport:
    """test_model for every weight format, then the deepImageJ checks; never raises on a bad
    package (the report says what is wrong), only on a path that is no package at all."""
    start = time.perf_counter()
    path = Path(path)
    rdf, read, source = _open(path)
    report = PackageReport(source=str(path))
    if not isinstance(rdf, dict):
        report.error = "the RDF is not a YAML mapping"
        return report
    nickname = ((rdf.get("config") or {}).get("bioimageio") or {}).get("nickname")
    report.model_id = str(rdf.get("id") or nickname or "") or None
    report.name = rdf.get("name")
    formats = [fmt for fmt, entry in (rdf.get("weights") or {}).items() if entry]
    try:
        report.formats = [_test_format(source, fmt) for fmt in formats] or [
            _test_format(source, None)
        ]
        report.checks = run_checks(rdf, read)
    except Exception as err:  # a crash inside a validator is a failed validation, reported
        report.error = f"{type(err).__name__}: {err}"
    report.seconds = time.perf_counter() - start
    return report


def report_markdown(reports: Sequence[PackageReport]) -> str:
    """A readable report: one table row per package, then every failure."""
    lines = ["# Validation report", "", "| package | result | formats | deepImageJ | s |"]
    lines.append("|---|---|---|---|---|")
    for r in reports:
        formats = ", ".join(f"{f.weight_format}: {f.status}" for f in r.formats)
        checks = f"{sum(c.passed for c in r.checks)}/{len(r.checks)}"
        verdict = "passed" if r.passed else "FAILED"
        lines.append(
            f"| {r.model_id or r.source} | {verdict} | {formats} | {checks} | {r.seconds:.1f} |"
        )
    for r in reports:
        problems = [f"`{f.weight_format}`: {e}" for f in r.formats for e in f.errors]
        problems += [f"deepImageJ `{c.name}`: {c.message}" for c in r.checks if not c.passed]
        if r.error:
            problems.insert(0, r.error)
        if problems:
            lines += ["", f"## {r.model_id or r.source}", "", f"Source: `{r.source}`", ""]
            lines += [f"* {p}" for p in problems]
    return "\n".join(lines) + "\n"


def write_reports(
    reports: Sequence[PackageReport], folder: Path, stem: str = "validation"
) -> tuple[Path, Path]:
    """`<stem>.json` (machine-readable, with `passed`) and `<stem>.md` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [{**r.model_dump(), "passed": r.passed} for r in reports]
    json_path = folder / f"{stem}.json"
    md_path = folder / f"{stem}.md"
    json_path.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(report_markdown(reports), encoding="utf-8")
    return json_path, md_path
