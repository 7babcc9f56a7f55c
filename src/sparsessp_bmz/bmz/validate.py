"""Validation of any bioimage.io model package: bioimageio.core, the consumers, the collection.

`test_model` runs once per weight format (never with `stop_early`, which skips checks and still
says "passed"), so a report says which format fails. Each run saves the outputs it computed (its
`working_dir`), and we compare those with the test outputs at the BMZ model runner's tolerance
too, so that check costs no second run. The consumer and collection checks read the raw YAML as
written, because bioimageio.core upgrades what it loads and would hide exactly what deepImageJ
trips over.

Foreign code: bioimageio.core imports and calls a state dict's architecture (and custom
processing ops) when testing, so a format that would run code from the package is tested only
with `trust_code=True` (`validate --trust-code`); otherwise it is reported as skipped, see
`bmz.trust`. This project's own packages are recognised (their shipped network source is byte for
byte what this installation generates) and tested fully. Descriptions are size-checked before
they are parsed (`bmz.limits`).

Profiles: `default` passes a package when every weight format passes `test_model` (or is
skipped as untrusted code, as long as one format ran and passed) and deepImageJ accepts it; the
collection checks are reported but do not fail it. `collection` also fails on every collection
error (warnings never fail). An ilastik or QuPath refusal never fails a package:
a 3D package is simply not for QuPath.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from sparsessp_bmz.bmz import collection, limits, trust
from sparsessp_bmz.bmz.checks import CheckResult, FileReader, fail, ok
from sparsessp_bmz.bmz.consumers import ConsumerVerdict, static_verdicts
from sparsessp_bmz.bmz.offline import accounts_unchecked, github_users
from sparsessp_bmz.errors import UserInputError

REPORT_JSON = "validation.json"
REPORT_MD = "validation.md"
Profile = Literal["default", "collection"]
PROFILES: tuple[Profile, ...] = ("default", "collection")
#: Consumers whose refusal fails a package (in every profile).
REQUIRED_CONSUMERS = ("bioimageio.core", "napari", "deepImageJ")
RUNNER_CHECK = "model_runner_tolerance"


class FormatResult(BaseModel):
    """bioimageio.core `test_model` for one weight format.

    `status` is bioimageio.core's (`passed`, `failed`, `valid-format`, ...) or `skipped` when the
    format was not run because testing it would run code from the package (`errors` says what
    and how to consent, see `bmz.trust`).
    """

    weight_format: str
    status: str
    errors: list[str]
    seconds: float

    @property
    def skipped(self) -> bool:
        return self.status == trust.SKIPPED

    @property
    def short(self) -> str:
        """`ok`, the status, or `skipped (untrusted code)` for the summary line."""
        if self.status == "passed":
            return "ok"
        return "skipped (untrusted code)" if self.skipped else self.status


class PackageReport(BaseModel):
    """Everything we know about one package after validating it."""

    source: str
    model_id: str | None = None
    name: str | None = None
    profile: Profile = "default"
    online: bool = False
    trust_code: bool = False
    formats: list[FormatResult] = []
    consumers: list[ConsumerVerdict] = []
    collection: list[CheckResult] = []
    error: str | None = None
    seconds: float = 0.0

    def consumer(self, name: str) -> ConsumerVerdict | None:
        return next((c for c in self.consumers if c.name == name), None)

    @property
    def collection_errors(self) -> list[CheckResult]:
        return [c for c in self.collection if c.blocking]

    @property
    def passed(self) -> bool:
        # a format skipped for untrusted code does not fail the package, but something must
        # have been run: a package whose formats are all skipped cannot pass
        return (
            self.error is None
            and any(f.status == "passed" for f in self.formats)
            and all(f.status == "passed" or f.skipped for f in self.formats)
            and all(c.accepted for c in self.consumers if c.name in REQUIRED_CONSUMERS)
            and (self.profile != "collection" or not self.collection_errors)
        )

    def summary_line(self) -> str:
        """One line: verdict, id, per-format status, consumers, collection, time, source."""
        verdict = "PASS" if self.passed else "FAIL"
        formats = ", ".join(f"{f.weight_format} {f.short}" for f in self.formats)
        consumers = " ".join(f"{c.name} {'yes' if c.accepted else 'no'}" for c in self.consumers)
        warnings = sum(not c.passed and not c.blocking for c in self.collection)
        collection_part = (
            f"collection[{self.profile}] {sum(c.passed for c in self.collection)}/"
            f"{len(self.collection)}, {len(self.collection_errors)} errors, {warnings} warnings"
        )
        detail = self.error or f"{formats}; {consumers}; {collection_part}"
        return f"{verdict} {self.model_id or '?'} ({detail}) {self.seconds:.1f} s  {self.source}"


#: Every file name bioimageio.spec takes for a description (`identify_bioimageio_yaml_file_name`
#: in bioimageio.spec `_internal/io.py`: these names, or any name ending in "." + one of them,
#: anywhere in a zip).
DESCRIPTION_NAMES = ("rdf.yaml", "bioimageio.yaml", "model.yaml")


def _rdf_name(names: Sequence[str], where: Path) -> str | None:
    """The package's one description file at its root, or None.

    More than one file that bioimageio.spec could take for the description is refused: our checks
    (which decide what code may run) and bioimageio.core (which runs it) must read the same one,
    and bioimageio.spec's choice among several differs from ours.
    """
    candidates = sorted(
        name
        for name in names
        if any(
            name == d or name.endswith("." + d) or name.endswith("/" + d) for d in DESCRIPTION_NAMES
        )
    )
    if len(candidates) > 1:
        raise UserInputError(
            f"{where} holds several package descriptions {candidates}; a package has exactly "
            "one rdf.yaml (or bioimageio.yaml): remove the others"
        )
    return candidates[0] if candidates and "/" not in candidates[0] else None


def _zip_reader(path: Path) -> FileReader:
    def read_zip(member: str) -> bytes:
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)

    return read_zip


def _open_zip(path: Path) -> tuple[dict[str, Any], FileReader, str]:
    try:
        with zipfile.ZipFile(path) as archive:
            limits.check_zip(path, archive)
            names = archive.namelist()
            name = _rdf_name(names, path)
            if name is None:
                nested = next((n for n in names if n.rsplit("/", 1)[-1] in DESCRIPTION_NAMES), None)
                hint = (
                    f" (it has {nested}: zip the package folder's contents, not the folder)"
                    if nested
                    else ""
                )
                raise UserInputError(
                    f"{path} holds no rdf.yaml or bioimageio.yaml at its root{hint}; it is not a "
                    "model package"
                )
            data = limits.read_zip_rdf(path, archive, name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise UserInputError(
            f"{path} is not a readable zip archive ({err}); it is truncated or corrupt - export "
            "or download the package again"
        ) from err
    where = f"{path}: {name}"
    rdf = limits.parse_rdf(where, data)
    limits.check_file_sources(where, rdf)
    return rdf, _zip_reader(path), str(path)


def open_package(path: Path) -> tuple[dict[str, Any], FileReader, str]:
    """(raw RDF, reader of package-relative files, source to hand to bioimageio.core) of a
    package folder, rdf.yaml/bioimageio.yaml file or zip.

    Raises UserInputError (one line: what is wrong, what to give instead) for anything that is
    no package description: missing, not a zip or UTF-8 YAML, over the size limits
    (`bmz.limits`), YAML that does not parse or has python tags, not a mapping. Nothing of the
    package is parsed before its size is checked.
    """
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path} does not exist; give a package folder, rdf.yaml or .zip")
    if path.is_dir():
        try:
            name = _rdf_name([p.name for p in path.iterdir()], path)
        except OSError as err:
            raise UserInputError(f"{path} cannot be listed ({err.strerror or err})") from err
        if name is None:
            raise UserInputError(
                f"{path} holds no rdf.yaml or bioimageio.yaml; give a package folder, rdf.yaml "
                "or .zip"
            )
        return open_package(path / name)
    if path.is_file() and zipfile.is_zipfile(path):
        return _open_zip(path)
    if path.suffix.lower() == ".zip":
        raise UserInputError(
            f"{path} is not a zip archive (truncated or corrupt); export or download the "
            "package again"
        )
    rdf = limits.parse_rdf(str(path), limits.read_rdf_file(path))
    limits.check_file_sources(str(path), rdf)

    root = path.parent.resolve()

    def read_file(member: str) -> bytes:
        if "://" in member:
            raise FileNotFoundError(f"{member} is remote; validation runs offline")
        target = (root / member).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            # /dev/zero, a FIFO or ../../secret named by a hostile RDF is never read
            raise FileNotFoundError(f"{member} is not a file inside the package folder")
        return target.read_bytes()

    return rdf, read_file, str(path)


#: What bioimageio.core appends to a message when it saved outputs into our (temporary) working
#: directory: gone after validation, so not worth reporting.
_SAVED_NOTE = re.compile(r"\s*Saved \(intermediate\) outputs to \[.*?\]\.", re.DOTALL)


def _messages(summary: Any) -> list[str]:
    messages = []
    for detail in summary.details:
        if detail.status == "failed":
            messages += [
                f"{detail.name}: {_SAVED_NOTE.sub('', str(e.msg))}" for e in detail.errors
            ] or [detail.name]
    return messages


def _test_format(source: str, weight_format: str | None, working_dir: Path) -> FormatResult:
    """test_model for one format; it saves the outputs it computed into `working_dir`."""
    from bioimageio.core import test_model

    start = time.perf_counter()
    summary = test_model(
        source,
        weight_format=weight_format,  # type: ignore[arg-type]
        stop_early=False,
        working_dir=working_dir,
    )
    return FormatResult(
        weight_format=weight_format or "all",
        status=summary.status,
        errors=_messages(summary),
        seconds=time.perf_counter() - start,
    )


def runner_tolerance() -> tuple[float, float, float]:
    """(relative, absolute, mismatched per million) the BMZ model runner applies.

    The runner (aicell-lab/bioengine-worker, apps/model-runner/runtime_deployment.py) calls
    `test_model(rdf)` with no tolerance of its own, and bioimage.io removes
    `config.bioimageio` (where a package declares its tolerance) on upload, so what applies is
    bioimageio.spec's default `ReproducibilityTolerance` (model/v0_5.py): 1e-3, 1e-3, 100.
    """
    from bioimageio.spec.model.v0_5 import ReproducibilityTolerance

    default = ReproducibilityTolerance()
    return (
        float(default.relative_tolerance),
        float(default.absolute_tolerance),
        float(default.mismatched_elements_per_million),
    )


def _reproduced(actual: np.ndarray, expected: np.ndarray) -> tuple[bool, str]:
    rtol, atol, per_million = runner_tolerance()
    actual = np.squeeze(actual).astype(np.float64)
    expected = np.squeeze(expected).astype(np.float64)
    if actual.shape != expected.shape:
        return False, f"shape {actual.shape}, expected {expected.shape}"
    diff = np.abs(actual - expected)
    mismatched = int(np.count_nonzero(diff > atol + rtol * np.abs(expected)))
    allowed = per_million * expected.size / 1e6
    max_diff = float(diff.max()) if diff.size else 0.0
    text = f"max |d| {max_diff:.2g}, {mismatched} of {expected.size} outside"
    return mismatched <= allowed, text


def check_runner_tolerance(
    rdf: dict[str, Any], read: FileReader, outputs: dict[str, Path]
) -> CheckResult:
    """The outputs each format computed in its test_model run (saved in `outputs[format]`),
    against the test outputs at the runner's tolerance. Only reads those saved arrays (no
    pickles) and the package's test outputs: nothing of the package is imported. Formats skipped
    for untrusted code are not in `outputs`."""
    rtol, atol, per_million = runner_tolerance()
    tolerance = f"rtol {rtol:g}, atol {atol:g}, {per_million:g} per million"
    expected_files = [t for t in collection.tensor_files(rdf) if t.kind == "outputs"]
    if not outputs or not expected_files:
        return fail(RUNNER_CHECK, "no weight format was run, or no test outputs to compare")
    failures, passes = [], []
    for fmt, folder in outputs.items():
        for tensor in expected_files:
            where = f"{fmt} {tensor.label}"
            actual_path = folder / f"actual_output_{tensor.label}_{fmt}.npy"
            if not actual_path.is_file():
                failures.append(f"{where}: no output computed (its test failed before)")
                continue
            try:
                assert tensor.test is not None
                expected = collection.load_array(tensor.test, read(tensor.test))
            except Exception as err:
                return fail(
                    RUNNER_CHECK, f"cannot read test output {tensor.test}: {err}", "warning"
                )
            actual = np.load(actual_path, allow_pickle=False)
            reproduced, text = _reproduced(actual, expected)
            (passes if reproduced else failures).append(f"{where}: {text}")
    if failures:
        return fail(RUNNER_CHECK, f"at {tolerance}: " + "; ".join(failures + passes))
    return ok(RUNNER_CHECK, f"at {tolerance}: " + "; ".join(passes))


def runtime_verdicts(formats: Sequence[FormatResult]) -> list[ConsumerVerdict]:
    """bioimageio.core (every weight format must pass test_model) and napari, which runs
    packages through bioimageio.core."""
    checks = [
        CheckResult(
            name=f"test_model {f.weight_format}",
            passed=f.status == "passed",
            message=(f"{f.status} in {f.seconds:.1f} s" if not f.skipped else f.status)
            + (f": {'; '.join(f.errors)}" if f.errors else ""),
            severity="warning" if f.skipped else "error",
        )
        for f in formats
    ]
    if formats and not any(f.status == "passed" for f in formats):
        checks.append(fail("tested_formats", "no weight format was tested and passed"))
    core = ConsumerVerdict.from_checks("bioimageio.core", checks)
    napari = ConsumerVerdict.from_checks(
        "napari",
        [
            CheckResult(
                name="via_bioimageio_core",
                passed=core.accepted,
                message="runs packages through bioimageio.core: same verdict",
            )
        ],
    )
    return [core, napari]


def _model_id(rdf: dict[str, Any]) -> str | None:
    nickname = ((rdf.get("config") or {}).get("bioimageio") or {}).get("nickname")
    return str(rdf.get("id") or nickname or "") or None


def _skipped(weight_format: str, reason: str) -> FormatResult:
    return FormatResult(
        weight_format=weight_format,
        status=trust.SKIPPED,
        errors=[trust.skip_message(reason)],
        seconds=0.0,
    )


def validate_package(
    path: Path,
    *,
    profile: Profile = "default",
    online: bool = False,
    trust_code: bool = False,
) -> PackageReport:
    """test_model for every weight format, the consumer checks and the collection checks.

    Never raises on a bad package (the report says what is wrong), only on a path that is no
    package description at all (`open_package`) or an unknown profile. `online=True` lets the
    collection checks look up GitHub accounts; nothing else uses the network.

    Without `trust_code`, a weight format whose test would import or run code from the package
    (a state dict whose architecture is not this project's own network source, a custom
    processing op, Keras/TensorFlow weights; see `bmz.trust`) is not run but reported as
    `skipped` with the reason; the other formats are tested. No consumer or collection check
    imports package code.
    """
    if profile not in PROFILES:
        raise UserInputError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    start = time.perf_counter()
    path = Path(path)
    rdf, read, source = open_package(path)
    report = PackageReport(source=str(path), profile=profile, online=online, trust_code=trust_code)
    report.model_id = _model_id(rdf)
    report.name = rdf.get("name") if isinstance(rdf.get("name"), str) else None
    weights = rdf.get("weights")
    formats = [fmt for fmt, entry in weights.items() if entry] if isinstance(weights, dict) else []
    untrusted = {} if trust_code else trust.untrusted_formats(rdf, read)
    everywhere = None if trust_code else trust.package_code(rdf)
    # offline, bioimageio.core must not ask GitHub about the package's accounts (its request
    # fails without a network and fails the whole test); the collection checks report them as
    # not checked instead
    unchecked = accounts_unchecked([] if online else github_users(rdf))
    try:
        with unchecked, tempfile.TemporaryDirectory(prefix="sparsessp-validate-") as tmp:
            run = [fmt for fmt in formats if fmt not in untrusted]
            outputs = {fmt: Path(tmp) / fmt for fmt in run}
            results = {fmt: _test_format(source, fmt, outputs[fmt]) for fmt in run}
            results |= {fmt: _skipped(fmt, reason) for fmt, reason in untrusted.items()}
            report.formats = [results[fmt] for fmt in formats]
            if not formats:  # no weights to name: bioimageio.core says what is wrong
                report.formats = (
                    [_skipped("all", everywhere)]
                    if everywhere
                    else [_test_format(source, None, Path(tmp) / "all")]
                )
            runner = check_runner_tolerance(rdf, read, outputs)
        report.consumers = runtime_verdicts(report.formats) + static_verdicts(rdf, read)
        report.collection = [*collection.run_checks(rdf, read, online=online), runner]
    except Exception as err:  # a crash inside a validator is a failed validation, reported
        report.error = f"{type(err).__name__}: {err}"
    report.seconds = time.perf_counter() - start
    return report


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _status(check: CheckResult) -> str:
    if check.passed:
        return "pass"
    return "FAIL" if check.blocking else "warning"


def _package_section(r: PackageReport) -> list[str]:
    lines = ["", f"## {r.model_id or r.source}", "", f"Source: `{r.source}`"]
    if r.error:
        lines += ["", f"Validation crashed: {r.error}"]
    skipped = [f"`{f.weight_format}`: {e}" for f in r.formats if f.skipped for e in f.errors]
    if skipped:
        lines += ["", "Not run (`--trust-code` runs them):", ""]
        lines += [f"* {p}" for p in skipped]
    problems = [f"`{f.weight_format}`: {e}" for f in r.formats if not f.skipped for e in f.errors]
    if problems:
        lines += ["", "bioimageio.core `test_model` failures:", ""]
        lines += [f"* {p}" for p in problems]
    if r.consumers:
        lines += ["", "| consumer | verdict | why |", "|---|---|---|"]
        for c in r.consumers:
            verdict = "accepts" if c.accepted else "refuses"
            required = "" if c.name in REQUIRED_CONSUMERS else " (optional)"
            lines.append(f"| {c.name}{required} | {verdict} | {_cell(c.reason)} |")
    if r.collection:
        failing = "fail the package" if r.profile == "collection" else "reported only"
        lines += [
            "",
            f"Collection checks (profile `{r.profile}`: errors {failing}):",
            "",
            "| check | result | message |",
            "|---|---|---|",
        ]
        lines += [f"| {c.name} | {_status(c)} | {_cell(c.message)} |" for c in r.collection]
    return lines


def report_markdown(reports: Sequence[PackageReport]) -> str:
    """A readable report: one row per package, then per package its consumer and collection
    tables (every check a named line) and every test_model failure."""
    lines = [
        "# Validation report",
        "",
        "| package | result | profile | formats | consumers | collection errors | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        formats = ", ".join(f"{f.weight_format}: {f.status}" for f in r.formats)
        consumers = ", ".join(f"{c.name} {'yes' if c.accepted else 'no'}" for c in r.consumers)
        verdict = "passed" if r.passed else "FAILED"
        lines.append(
            f"| {r.model_id or r.source} | {verdict} | {r.profile} | {formats} | {consumers} "
            f"| {len(r.collection_errors)} | {r.seconds:.1f} |"
        )
    for r in reports:
        lines += _package_section(r)
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
