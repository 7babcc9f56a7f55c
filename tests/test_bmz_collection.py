"""bioimage.io collection checks, consumer verdicts and the validation profiles."""

from __future__ import annotations

import io
import json
import shutil
import sys
import types
import zipfile
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError

import numpy as np
import pytest
import tifffile
import yaml
from bmz_fixtures import exported_3to2d
from PIL import Image
from typer.testing import CliRunner

from sparsessp_bmz.bmz import collection, consumers, validate
from sparsessp_bmz.bmz.checks import CheckResult, fail, ok
from sparsessp_bmz.cli import app

__all__ = ["exported_3to2d"]  # fixtures


# --- A small package held in memory: raw RDF + files ------------------------------------------
def _png(width: int, height: int, noise: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    pixels = (
        rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        if noise
        else np.zeros((height, width, 3), dtype=np.uint8)
    )
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _tif(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, array)
    return out.getvalue()


VOLUME = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8) / 7.0


@pytest.fixture
def files() -> dict[str, bytes]:
    return {
        "README.md": b"# A model\n\nText.\n\n## Validation\n\nHow to check it.\n",
        "cover.png": _png(256, 128),
        "test_input.npy": _npy(VOLUME[None, None]),
        "sample_input.tif": _tif(VOLUME),
        "test_output.npy": _npy(2 * VOLUME[None, None]),
        "sample_output.tif": _tif(2 * VOLUME),
        "LICENSE.txt": b"all mine",
    }


@pytest.fixture
def raw() -> dict[str, Any]:
    return {
        "format_version": "0.5.10",
        "type": "model",
        "id": "brave-model",
        "name": "A good model (v1)",
        "description": "Predicts things.",
        "license": "MIT",
        "documentation": "README.md",
        "covers": ["cover.png"],
        "authors": [{"name": "Ada", "github_user": "ada-l"}],
        "maintainers": [{"name": "Ada", "github_user": "ada-l"}],
        "inputs": [
            {
                "id": "raw",
                "test_tensor": {"source": "test_input.npy", "sha256": "0" * 64},
                "sample_tensor": {"source": "sample_input.tif"},
            }
        ],
        "outputs": [
            {
                "id": "prediction",
                "test_tensor": "test_output.npy",
                "sample_tensor": "sample_output.tif",
            }
        ],
        "weights": {
            "torchscript": {"source": "w.pt", "pytorch_version": "2.0.0"},
            "pytorch_state_dict": {"source": "w.pth", "pytorch_version": "2.0"},
            "onnx": {"source": "w.onnx", "opset_version": 17},
        },
        "config": {"bioimageio": {"nickname": "brave-model"}},
    }


def _reader(files: dict[str, bytes]):
    def read(name: str) -> bytes:
        if name not in files:
            raise KeyError(f"no {name} in the package")
        return files[name]

    return read


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def _check(raw: dict, files: dict, name: str, *, online: bool = False) -> CheckResult:
    return _by_name(collection.run_checks(raw, _reader(files), online=online))[name]


def test_a_complete_package_passes_every_check_offline_but_the_account_lookup(
    raw: dict, files: dict
):
    results = collection.run_checks(raw, _reader(files))
    assert [r.name for r in results] == [
        "name",
        "description",
        "license",
        "documentation",
        "covers",
        "identifier",
        "maintainers",
        "author_github_user",
        "github_user",
        "sample_tensors",
        "pytorch_version",
    ]
    assert {r.name for r in results if not r.passed} == {"github_user"}
    github = _by_name(results)["github_user"]
    assert github.severity == "warning" and not github.blocking
    assert "not checked" in github.message and "--online" in github.message


def _set(raw: dict, files: dict, path: str, value: Any) -> None:
    """raw['a.b.0.c'] = value; a value for a 'files:NAME' path replaces a file."""
    if path.startswith("files:"):
        files[path.removeprefix("files:")] = value
        return
    *parents, last = path.split(".")
    target: Any = raw
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DELETE:
        del target[int(last) if isinstance(target, list) else last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "check", "severity", "phrase"),
    [
        ("name", "Abc", "name", "error", "3 characters, not 5-128"),
        ("name", "x" * 129, "name", "error", "129 characters"),
        ("name", "My model: v2!", "name", "error", "characters ['!', ':']"),
        ("description", "d" * 1025, "description", "error", "1025 characters, above 1024"),
        ("description", "d" * 600, "description", "warning", "warns above 512"),
        ("license", "MIT-ish", "license", "error", "neither an SPDX identifier nor a file"),
        ("license", "GPL-2.0", "license", "warning", "deprecated SPDX"),
        ("license", "LICENSE.txt", "license", "warning", "custom licence file"),
        ("license", _DELETE, "license", "error", "`license` is missing"),
        ("documentation", "README.txt", "documentation", "error", "not a .md file"),
        ("documentation", "DOCS.md", "documentation", "error", "cannot be read"),
        ("files:README.md", b"# A model\n\nvalidated.\n", "documentation", "error", "no 'Valid"),
        ("covers", [], "covers", "error", "no `covers`"),
        ("covers", ["cover.bmp"], "covers", "error", "suffix not one of"),
        ("covers", ["missing.png"], "covers", "error", "missing.png: cannot be read"),
        ("files:cover.png", b"not a png", "covers", "error", "not a readable image"),
        ("files:cover.png", _png(700, 350, noise=True), "covers", "error", "above 500 KB"),
        ("files:cover.png", _png(300, 100), "covers", "warning", "3.00:1, not 1:1 or 2:1"),
        ("id", _DELETE, "identifier", "warning", "only config.bioimageio.nickname"),
        ("maintainers", [], "maintainers", "warning", "authors ['ada-l'] stand in"),
        ("maintainers.0.github_user", _DELETE, "maintainers", "error", "without `github_user`"),
        ("authors.0.github_user", _DELETE, "author_github_user", "warning", "no author has"),
        ("maintainers.0.github_user", "-ada", "github_user", "error", "not a valid GitHub"),
        ("maintainers.0.github_user", "a" * 40, "github_user", "error", "not a valid GitHub"),
        ("files:sample_input.tif", _tif(VOLUME + 1), "sample_tensors", "error", "differs from"),
        ("files:sample_input.tif", _tif(VOLUME[:2]), "sample_tensors", "error", "has shape"),
        ("files:sample_output.tif", _tif(VOLUME), "sample_tensors", "warning", "prediction:"),
        ("weights.torchscript.pytorch_version", _DELETE, "pytorch_version", "error", "1.10"),
        ("weights.pytorch_state_dict.pytorch_version", "two", "pytorch_version", "error", "'two'"),
    ],
)
def test_each_collection_rule_fails_with_a_clear_message(
    raw: dict, files: dict, path: str, value: Any, check: str, severity: str, phrase: str
):
    _set(raw, files, path, value)
    result = _check(raw, files, check)
    assert not result.passed and result.severity == severity, result
    assert phrase in result.message, result.message


def test_no_maintainer_and_no_author_account_is_an_error(raw: dict, files: dict):
    raw["maintainers"] = []
    del raw["authors"][0]["github_user"]
    result = _check(raw, files, "maintainers")
    assert result.blocking and "no maintainer and no author" in result.message


def test_a_sample_with_its_axes_in_another_order_is_the_same_data(raw: dict, files: dict):
    files["sample_input.tif"] = _tif(np.ascontiguousarray(VOLUME.transpose(1, 2, 0)))
    assert _check(raw, files, "sample_tensors").passed


def test_format_04_lists_and_missing_samples_are_read(raw: dict, files: dict):
    for tensor in raw["inputs"] + raw["outputs"]:
        del tensor["test_tensor"], tensor["sample_tensor"]
    raw["test_inputs"], raw["sample_inputs"] = ["test_input.npy"], ["sample_input.tif"]
    assert _check(raw, files, "sample_tensors").passed
    files["sample_input.tif"] = _tif(VOLUME * 3)
    assert _check(raw, files, "sample_tensors").blocking
    del raw["sample_inputs"]
    result = _check(raw, files, "sample_tensors")
    assert result.passed and "converts the test tensor" in result.message


def test_a_strange_rdf_gives_failed_checks_not_a_crash(raw: dict, files: dict):
    raw["weights"] = {"torchscript": {"source": "w.pt", "pytorch_version": {"a": 1}}}
    raw["covers"] = "cover.png"
    raw["authors"] = "Ada"
    results = _by_name(collection.run_checks(raw, _reader(files)))
    assert results["covers"].blocking
    assert results["pytorch_version"].blocking


# --- GitHub accounts online ------------------------------------------------------------------
class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch):
    """Answers of the fake GitHub API by user (an exception is raised), and the URLs asked."""
    answers: dict[str, Any] = {}
    asked: list[tuple[str, float]] = []

    def urlopen(request, timeout: float):
        asked.append((request.full_url, timeout))
        answer = answers[request.full_url.rsplit("/", 1)[1]]
        if isinstance(answer, BaseException):
            raise answer
        return _Response(json.dumps({"login": answer}).encode())

    collection._lookup_github_user.cache_clear()
    monkeypatch.setattr(collection, "urlopen", urlopen)
    yield answers, asked
    collection._lookup_github_user.cache_clear()


def test_online_accounts_are_looked_up_with_a_short_timeout(raw: dict, files: dict, github):
    answers, asked = github
    answers["ada-l"] = "ada-l"
    result = _check(raw, files, "github_user", online=True)
    assert result.passed, result.message
    assert asked == [("https://api.github.com/users/ada-l", collection.GITHUB_TIMEOUT_S)]
    assert collection.GITHUB_TIMEOUT_S <= 10


def test_offline_never_touches_the_network(raw: dict, files: dict, github):
    _, asked = github
    collection.run_checks(raw, _reader(files))
    assert asked == []


def test_an_account_github_does_not_know_is_an_error(raw: dict, files: dict, github):
    answers, _ = github
    answers["ada-l"] = HTTPError("https://api.github.com/users/ada-l", 404, "Not Found", {}, None)  # type: ignore[arg-type]
    result = _check(raw, files, "github_user", online=True)
    assert result.blocking and "no GitHub account 'ada-l'" in result.message


@pytest.mark.parametrize(
    "answer",
    [
        URLError("no route"),
        TimeoutError("timed out"),
        HTTPError("https://api.github.com/users/ada-l", 403, "rate limit", {}, None),  # type: ignore[arg-type]
    ],
)
def test_a_network_failure_is_a_warning(raw: dict, files: dict, github, answer: BaseException):
    answers, _ = github
    answers["ada-l"] = answer
    result = _check(raw, files, "github_user", online=True)
    assert not result.passed and result.severity == "warning", result


def test_a_github_that_never_answers_cannot_hang_validation(
    raw: dict, files: dict, monkeypatch: pytest.MonkeyPatch
):
    import time

    def hanging_urlopen(request, timeout: float):
        time.sleep(5)  # e.g. a DNS lookup, which the socket timeout does not bound

    collection._lookup_github_user.cache_clear()
    monkeypatch.setattr(collection, "urlopen", hanging_urlopen)
    monkeypatch.setattr(collection, "GITHUB_TIMEOUT_S", 0.1)
    start = time.perf_counter()
    result = _check(raw, files, "github_user", online=True)
    assert time.perf_counter() - start < 3
    assert result.severity == "warning" and "did not answer" in result.message
    collection._lookup_github_user.cache_clear()


# --- Consumers -------------------------------------------------------------------------------
def _stub(name: str, results: list[CheckResult] | Exception) -> types.ModuleType:
    module = types.ModuleType(name)

    def run_checks(rdf: dict[str, Any], read) -> list[CheckResult]:
        if isinstance(results, Exception):
            raise results
        return results

    module.run_checks = run_checks  # type: ignore[attr-defined]
    return module


def test_static_verdicts_use_each_consumer_module_and_skip_absent_ones(
    raw: dict, files: dict, monkeypatch: pytest.MonkeyPatch
):
    stubs = {
        "stub_accepting": [ok("a", "fine"), fail("b", "only a warning", "warning")],
        "stub_refusing": [ok("a", "fine"), fail("three_d", "more than 2 spatial axes")],
        "stub_crashing": ValueError("no axes"),
    }
    for module_name, results in stubs.items():
        monkeypatch.setitem(sys.modules, module_name, _stub(module_name, results))
    monkeypatch.setattr(
        consumers,
        "STATIC_CONSUMERS",
        {
            "Accepting": "stub_accepting",
            "Refusing": "stub_refusing",
            "Crashing": "stub_crashing",
            "Absent": "sparsessp_bmz.bmz.no_such_consumer",
        },
    )
    verdicts = {v.name: v for v in consumers.static_verdicts(raw, _reader(files))}
    assert list(verdicts) == ["Accepting", "Refusing", "Crashing"]
    assert verdicts["Accepting"].accepted and "warnings: b" in verdicts["Accepting"].reason
    assert not verdicts["Refusing"].accepted
    assert verdicts["Refusing"].reason == "three_d: more than 2 spatial axes"
    assert (
        not verdicts["Crashing"].accepted and "ValueError: no axes" in verdicts["Crashing"].reason
    )


def test_static_verdicts_of_our_package_need_no_test_run(exported_3to2d: Path):
    archive = zipfile.ZipFile(exported_3to2d)
    raw = yaml.safe_load(archive.read("rdf.yaml"))
    verdicts = {v.name: v for v in consumers.static_verdicts(raw, archive.read)}
    assert verdicts["deepImageJ"].accepted, verdicts["deepImageJ"].reason
    assert set(verdicts) <= {"deepImageJ", "ilastik", "QuPath"}


# --- The model runner's tolerance ------------------------------------------------------------
def test_runner_tolerance_is_the_spec_default_the_runner_applies():
    assert validate.runner_tolerance() == (1e-3, 1e-3, 100.0)


@pytest.mark.parametrize(
    ("change", "passes"),
    [(0.0, True), (5e-4, True), (0.01, False)],
)
def test_model_runner_tolerance_compares_the_outputs_a_test_run_saved(
    raw: dict, files: dict, tmp_path: Path, change: float, passes: bool
):
    expected = 2 * VOLUME[None, None]
    for fmt in ("torchscript", "onnx"):
        (tmp_path / fmt).mkdir()
        np.save(tmp_path / fmt / f"actual_output_prediction_{fmt}.npy", expected + change)
    outputs = {"torchscript": tmp_path / "torchscript", "onnx": tmp_path / "onnx"}
    result = validate.check_runner_tolerance(raw, _reader(files), outputs)
    assert result.name == "model_runner_tolerance"
    assert result.passed is passes, result.message
    assert "torchscript prediction" in result.message and "onnx prediction" in result.message


def test_model_runner_tolerance_fails_a_format_that_computed_nothing(
    raw: dict, files: dict, tmp_path: Path
):
    result = validate.check_runner_tolerance(raw, _reader(files), {"onnx": tmp_path})
    assert result.blocking and "onnx prediction: no output computed" in result.message


def test_model_runner_tolerance_allows_100_mismatches_per_million_like_the_runner():
    expected = np.zeros(20_000, dtype=np.float32)
    actual = expected.copy()
    actual[:2] = 1.0  # 100 per million
    assert validate._reproduced(actual, expected)[0]
    actual[2] = 1.0
    assert not validate._reproduced(actual, expected)[0]


# --- Profiles on a real package --------------------------------------------------------------
@pytest.fixture(scope="module")
def without_validation_section(exported_3to2d: Path, tmp_path_factory) -> Path:
    """Our package with one weight format (quick) and a model card without a Validation
    section: bioimageio.core only warns, the collection checks call it an error."""
    folder = tmp_path_factory.mktemp("no-validation") / "package"
    shutil.copytree(exported_3to2d.with_suffix(""), folder)
    content = yaml.safe_load((folder / "rdf.yaml").read_text())
    torchscript = content["weights"]["torchscript"]
    torchscript.pop("parent", None)  # its parent format is gone
    content["weights"] = {"torchscript": torchscript}
    (folder / "rdf.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
    card = folder / content["documentation"]
    text = card.read_text().replace("Validation", "Checks").replace("validation", "checks")
    card.write_text(text)
    return folder


@pytest.fixture(scope="module")
def default_report(without_validation_section: Path) -> validate.PackageReport:
    return validate.validate_package(without_validation_section)


def test_default_profile_reports_collection_errors_without_failing(
    default_report: validate.PackageReport,
):
    report = default_report
    assert report.profile == "default"
    assert report.passed, report.summary_line()
    errors = {c.name for c in report.collection_errors}
    assert "documentation" in errors
    assert [c.name for c in report.collection][-1] == "model_runner_tolerance"
    assert next(c for c in report.collection if c.name == "model_runner_tolerance").passed


def test_collection_profile_fails_on_collection_errors_only(
    default_report: validate.PackageReport,
):
    strict = default_report.model_copy(update={"profile": "collection"})
    assert not strict.passed
    warnings_only = strict.model_copy(
        update={"collection": [c for c in strict.collection if not c.blocking]}
    )
    assert warnings_only.passed


def test_report_lists_consumers_and_every_collection_check(
    default_report: validate.PackageReport,
):
    report = default_report
    names = [c.name for c in report.consumers]
    assert names[:3] == ["bioimageio.core", "napari", "deepImageJ"]
    assert all(c.accepted for c in report.consumers[:3])
    core = report.consumer("bioimageio.core")
    assert core is not None and [c.name for c in core.checks] == ["test_model torchscript"]
    line = report.summary_line()
    assert line.startswith("PASS ") and "bioimageio.core yes" in line and "deepImageJ yes" in line
    assert "collection[default]" in line
    markdown = validate.report_markdown([report])
    assert "| consumer | verdict | why |" in markdown and "| deepImageJ | accepts |" in markdown
    for check in report.collection:
        assert f"| {check.name} | " in markdown
    assert "| documentation | FAIL |" in markdown and "| github_user |" in markdown


def test_an_optional_consumer_refusing_does_not_fail_the_package(
    default_report: validate.PackageReport,
):
    refused = consumers.ConsumerVerdict.from_checks("QuPath", [fail("axes", "3 spatial axes")])
    report = default_report.model_copy(update={"consumers": [*default_report.consumers, refused]})
    assert report.passed
    assert "QuPath no" in report.summary_line()
    deepimagej = consumers.ConsumerVerdict.from_checks("deepImageJ", [fail("ids", "no id")])
    others = [c for c in default_report.consumers if c.name != "deepImageJ"]
    assert not default_report.model_copy(update={"consumers": [*others, deepimagej]}).passed


def test_validate_command_profiles_and_reports(without_validation_section: Path, tmp_path: Path):
    runner = CliRunner()
    common = [str(without_validation_section), "--report-dir", str(tmp_path / "reports")]
    strict = runner.invoke(app, ["validate", *common, "--profile", "collection"])
    assert strict.exit_code == 1, strict.output
    assert strict.output.startswith("FAIL ")
    assert "  deepImageJ accepts" in strict.output
    assert "  collection error documentation:" in strict.output
    records = json.loads((tmp_path / "reports" / "validation.json").read_text())
    assert records[0]["profile"] == "collection" and records[0]["passed"] is False
    assert {c["name"] for c in records[0]["consumers"]} >= {"bioimageio.core", "deepImageJ"}
    bad = runner.invoke(app, ["validate", *common, "--profile", "strictest"])
    assert bad.exit_code == 2


def test_unknown_profile_is_a_user_error(without_validation_section: Path):
    from sparsessp_bmz.errors import UserInputError

    with pytest.raises(UserInputError, match="unknown profile"):
        validate.validate_package(without_validation_section, profile="strict")  # type: ignore[arg-type]
