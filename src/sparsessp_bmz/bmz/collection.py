"""What bioimage.io (upload, review and the collection's CI) expects beyond a passing
bioimageio.core test: metadata, documentation, covers, maintainers, sample tensors and the
PyTorch version the CI environments are built from.

Every check reads the raw YAML as written plus the files it points at, so it works for any
package (format 0.4 or 0.5, ours or foreign) and needs no bioimageio.core test run. The one
collection check that does need a run, `model_runner_tolerance`, lives in `validate.py`.

Offline (the default) nothing touches the network: a `github_user` is checked for syntax only
and reported as a warning saying the account was not looked up. `online=True` asks the GitHub
API whether each account exists (short timeout; a network failure is a warning, never a hang).

Two fields do not survive an upload: bioimage.io replaces `id` with its own animal-name id and
removes `config.bioimageio`; no check here relies on either.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import string
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import numpy as np

from sparsessp_bmz.bmz.checks import CheckResult, FileReader, fail, ok
from sparsessp_bmz.bmz.metadata import spdx_licenses

# --- Rules and the files they come from ------------------------------------------------------
# bioimageio.spec, src/bioimageio/spec/generic/v0_3.py (`GenericModelDescrBase.name`): letters,
# digits, "_+- ()"; 5 to 128 characters.
NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_+- ()")
NAME_MIN, NAME_MAX = 5, 128
# Same file, `description`: at most 1024 characters, a warning above 512.
DESCRIPTION_MAX, DESCRIPTION_WARN = 1024, 512
# Same file, `covers`: "Please use an image smaller than 500KB and an aspect ratio width to height
# of 2:1 or 1:1"; the suffixes are `VALID_COVER_IMAGE_EXTENSIONS` there (format 0.5; generic/v0_2.py
# adds .tif/.tiff for format 0.4, which gets upgraded). Neither the size nor the
# aspect ratio is enforced by bioimageio.spec or by bioimage-io/collection (whose former
# backoffice, bioimageio_collection_backoffice/thumbnails.py, only downsized covers to 600x340
# thumbnails): we fail a cover above the size and warn on the aspect ratio.
COVER_MAX_BYTES = 500 * 1024
COVER_ASPECTS = (1.0, 2.0)
COVER_ASPECT_SLACK = 0.1
COVER_SUFFIXES = (".gif", ".jpeg", ".jpg", ".png", ".svg")
COVER_SUFFIXES_04 = (*COVER_SUFFIXES, ".tif", ".tiff")
# bioimageio.spec, src/bioimageio/spec/model/v0_5.py (`ModelDescr._validate_documentation`): the
# documentation "should include a '#[#] Validation' (sub)section"; its suffix must be `.md`
# (case-sensitive, `FileDescr_documentation` in generic/v0_3.py). We require a real heading.
VALIDATION_HEADING = re.compile(
    r"^ {0,3}#{1,6}[ \t]+.*\bvalidation\b", re.IGNORECASE | re.MULTILINE
)
# GitHub's rule for account names: letters, digits and single inner hyphens, at most 39.
GITHUB_USER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
GITHUB_API_USER = "https://api.github.com/users/{}"
GITHUB_TIMEOUT_S = 5.0
# bioimage-io/collection, scripts/deepimagej_jython_scripts/deepimagej_download_model.py: the
# deepImageJ CI runs the first input's `sample_tensor` (else its test tensor, converted) and
# compares with the *test* output (deepimagej_check_outputs.py: |d| <= 1.5e-4 + 1e-4 |ref|), so a
# sample tensor must hold the test tensor's data. We allow only float32 round-off.
SAMPLE_RTOL = SAMPLE_ATOL = 1e-6
# bioimageio.spec, src/bioimageio/spec/_get_conda_env.py (`_get_default_pytorch_env`): without a
# `pytorch_version` the CI environment gets PyTorch 1.10; model/v0_5.py fills in "1.10" when it
# upgrades a 0.4 description that lacks one.
PYTORCH_WEIGHTS = ("torchscript", "pytorch_state_dict")


# --- Reading the raw YAML --------------------------------------------------------------------
def _source(value: Any) -> str | None:
    """A file reference as written: a plain string or a mapping with `source`."""
    if isinstance(value, dict):
        value = value.get("source")
    return value if isinstance(value, str) and value else None


def _people(rdf: dict[str, Any], field: str) -> list[dict[str, Any]]:
    people = rdf.get(field) or []
    return [p for p in people if isinstance(p, dict)] if isinstance(people, list) else []


def _guard(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """A check that crashes on a strange RDF is a failed check, not a failed validation."""
    try:
        return check()
    except Exception as err:
        return fail(name, f"could not be checked: {type(err).__name__}: {err}")


# --- Metadata --------------------------------------------------------------------------------
def check_name(rdf: dict[str, Any]) -> CheckResult:
    name = rdf.get("name")
    if not isinstance(name, str) or not name:
        return fail("name", "`name` is missing")
    problems = []
    if not NAME_MIN <= len(name) <= NAME_MAX:
        problems.append(f"{len(name)} characters, not {NAME_MIN}-{NAME_MAX}")
    bad = sorted(set(name) - NAME_CHARACTERS)
    if bad:
        problems.append(f"characters {bad} outside letters, digits, space and `_+-()`")
    if problems:
        return fail("name", f"{name!r}: " + "; ".join(problems))
    return ok("name", f"{name!r} ({len(name)} characters)")


def check_description(rdf: dict[str, Any]) -> CheckResult:
    description = rdf.get("description")
    if not isinstance(description, str) or not description.strip():
        return fail("description", "`description` is missing or empty", "warning")
    n = len(description)
    if n > DESCRIPTION_MAX:
        return fail("description", f"{n} characters, above {DESCRIPTION_MAX}")
    if n > DESCRIPTION_WARN:
        return fail(
            "description",
            f"{n} characters: bioimageio.spec warns above {DESCRIPTION_WARN}",
            "warning",
        )
    return ok("description", f"{n} characters")


def check_license(rdf: dict[str, Any], read: FileReader) -> CheckResult:
    value = rdf.get("license")
    if isinstance(value, str) and value in spdx_licenses():
        if spdx_licenses()[value]:
            return fail("license", f"{value!r} is a deprecated SPDX identifier", "warning")
        return ok("license", f"{value!r} is an SPDX identifier")
    source = _source(value)
    if source is None:
        return fail("license", "`license` is missing")
    try:
        read(source)
    except Exception:
        return fail(
            "license", f"{source!r} is neither an SPDX identifier nor a file in the package"
        )
    return fail(
        "license",
        f"custom licence file {source!r}: bioimage.io prefers an SPDX identifier",
        "warning",
    )


def check_documentation(rdf: dict[str, Any], read: FileReader) -> CheckResult:
    source = _source(rdf.get("documentation"))
    if source is None:
        return fail("documentation", "`documentation` is missing (a markdown file is expected)")
    if not source.endswith(".md"):
        return fail("documentation", f"{source!r} is not a .md file")
    try:
        text = read(source).decode("utf-8")
    except UnicodeDecodeError:
        return fail("documentation", f"{source!r} is not UTF-8 text")
    except Exception as err:
        return fail("documentation", f"{source!r} cannot be read: {err}")
    if not VALIDATION_HEADING.search(text):
        return fail(
            "documentation", f"{source!r} has no 'Validation' heading (e.g. `## Validation`)"
        )
    return ok("documentation", f"{source!r} has a Validation section")


# --- Covers ----------------------------------------------------------------------------------
def _cover_problems(source: str, data: bytes) -> tuple[list[str], list[str]]:
    """(errors, warnings) of one cover image."""
    errors: list[str] = []
    warnings: list[str] = []
    if len(data) > COVER_MAX_BYTES:
        errors.append(f"{source}: {len(data) / 1024:.0f} KB, above {COVER_MAX_BYTES // 1024} KB")
    if source.lower().endswith(".svg"):
        if b"<svg" not in data[:4096]:
            errors.append(f"{source}: not an SVG image")
        return errors, warnings
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            width, height = image.size
    except Exception as err:
        errors.append(f"{source}: not a readable image ({err})")
        return errors, warnings
    aspect = width / max(height, 1)
    if not any(abs(aspect - a) <= COVER_ASPECT_SLACK * a for a in COVER_ASPECTS):
        warnings.append(f"{source}: {width}x{height} is {aspect:.2f}:1, not 1:1 or 2:1")
    return errors, warnings


def check_covers(rdf: dict[str, Any], read: FileReader) -> CheckResult:
    covers = rdf.get("covers") or []
    if not isinstance(covers, list) or not covers:
        return fail("covers", "no `covers`: bioimage.io lists the model without an image")
    errors: list[str] = []
    warnings: list[str] = []
    suffixes = (
        COVER_SUFFIXES_04
        if str(rdf.get("format_version", "")).startswith("0.4")
        else COVER_SUFFIXES
    )
    for cover in covers:
        source = _source(cover)
        if source is None:
            errors.append(f"{cover!r} is no file reference")
            continue
        if not source.lower().endswith(suffixes):
            errors.append(f"{source}: suffix not one of {', '.join(suffixes)}")
            continue
        try:
            data = read(source)
        except Exception as err:
            errors.append(f"{source}: cannot be read ({err})")
            continue
        more_errors, more_warnings = _cover_problems(source, data)
        errors += more_errors
        warnings += more_warnings
    if errors:
        return fail("covers", "; ".join(errors + warnings))
    if warnings:
        return fail("covers", "; ".join(warnings), "warning")
    return ok("covers", f"{len(covers)} cover(s), each an image of at most 500 KB, 1:1 or 2:1")


# --- Identity and people ---------------------------------------------------------------------
def check_identifier(rdf: dict[str, Any]) -> CheckResult:
    nickname = ((rdf.get("config") or {}).get("bioimageio") or {}).get("nickname")
    if rdf.get("id"):
        return ok("identifier", f"id {rdf['id']!r} (bioimage.io replaces it on upload)")
    if nickname:
        return fail(
            "identifier",
            f"only config.bioimageio.nickname {nickname!r}, which bioimage.io removes on upload",
            "warning",
        )
    return fail("identifier", "no `id`: bioimage.io assigns one on upload", "warning")


def check_maintainers(rdf: dict[str, Any]) -> CheckResult:
    """At least one maintainer, each with a github_user.

    bioimageio.spec (generic/v0_3.py, `maintainers`) lets authors with a `github_user` stand in
    when no maintainer is listed; that is a warning here, no maintainer reachable at all an error.
    """
    maintainers = _people(rdf, "maintainers")
    missing = [str(m.get("name") or "?") for m in maintainers if not m.get("github_user")]
    if missing:
        return fail("maintainers", f"maintainer(s) without `github_user`: {missing}")
    if maintainers:
        users = [str(m["github_user"]) for m in maintainers]
        return ok("maintainers", f"maintainer(s) {users}")
    authors = [str(a["github_user"]) for a in _people(rdf, "authors") if a.get("github_user")]
    if authors:
        return fail(
            "maintainers",
            f"no `maintainers`; authors {authors} stand in (bioimageio.spec), but bioimage.io "
            "review expects maintainers",
            "warning",
        )
    return fail(
        "maintainers",
        "no maintainer and no author with a `github_user`: bioimage.io needs one to reach you; "
        "add maintainers (sparsessp-bmz: export --metadata FILE, see "
        "rdf_templates/metadata_example.yaml)",
    )


def check_author_github_user(rdf: dict[str, Any]) -> CheckResult:
    users = [str(a["github_user"]) for a in _people(rdf, "authors") if a.get("github_user")]
    if users:
        return ok("author_github_user", f"author account(s) {users}")
    return fail("author_github_user", "no author has a `github_user`", "warning")


@dataclass(frozen=True)
class _Lookup:
    exists: bool | None  # None: could not tell
    detail: str


@cache
def _lookup_github_user(user: str) -> _Lookup:
    """Ask the GitHub API once per process; never raises, never waits long."""
    request = Request(GITHUB_API_USER.format(user), headers={"Accept": "application/json"})
    try:
        with urlopen(request, timeout=GITHUB_TIMEOUT_S) as response:
            login = json.loads(response.read() or b"{}").get("login", user)
        return _Lookup(True, f"{login} exists")
    except HTTPError as err:
        if err.code == 404:
            return _Lookup(False, f"no GitHub account {user!r}")
        return _Lookup(None, f"GitHub answered {err.code} for {user!r} (rate limit?)")
    except Exception as err:  # DNS, refused, timeout: unknown, not wrong
        return _Lookup(None, f"could not reach GitHub for {user!r} ({type(err).__name__})")


def _lookup_with_deadline(user: str) -> _Lookup:
    """`_lookup_github_user` in a daemon thread, so that even a name lookup (DNS), which the
    socket timeout does not cover, cannot hold validation up for longer than the deadline."""
    found: list[_Lookup] = []
    thread = threading.Thread(target=lambda: found.append(_lookup_github_user(user)), daemon=True)
    thread.start()
    thread.join(GITHUB_TIMEOUT_S + 1.0)
    if found:
        return found[0]
    return _Lookup(None, f"GitHub did not answer for {user!r} within {GITHUB_TIMEOUT_S:g} s")


def _github_users(rdf: dict[str, Any]) -> Iterator[str]:
    seen = set()
    for field in ("maintainers", "authors"):
        for person in _people(rdf, field):
            user = person.get("github_user")
            if user and str(user) not in seen:
                seen.add(str(user))
                yield str(user)


def check_github_users(rdf: dict[str, Any], *, online: bool = False) -> CheckResult:
    users = list(_github_users(rdf))
    if not users:
        return ok("github_user", "no `github_user` named (see `maintainers`)")
    bad = [u for u in users if not GITHUB_USER.match(u)]
    if bad:
        return fail("github_user", f"not a valid GitHub account name: {bad}")
    if not online:
        return fail(
            "github_user",
            f"{users}: valid names, but the accounts were not checked (use --online)",
            "warning",
        )
    lookups = {u: _lookup_with_deadline(u) for u in users}
    missing = [lookups[u].detail for u in users if lookups[u].exists is False]
    unknown = [lookups[u].detail for u in users if lookups[u].exists is None]
    if missing:
        return fail("github_user", "; ".join(missing + unknown))
    if unknown:
        return fail("github_user", "; ".join(unknown), "warning")
    return ok("github_user", f"GitHub account(s) {users} exist")


# --- Tensors and weights ---------------------------------------------------------------------
@dataclass(frozen=True)
class TensorFiles:
    """The test and sample files of one input or output tensor as the RDF names them."""

    kind: str  # "inputs" or "outputs"
    label: str  # tensor id (0.5) or name (0.4): bioimageio.core's member id
    test: str | None
    sample: str | None
    first_input: bool


def tensor_files(rdf: dict[str, Any]) -> list[TensorFiles]:
    """Test and sample files per tensor, format 0.5 (on each tensor) or 0.4 (top-level lists)."""
    files = []
    for kind in ("inputs", "outputs"):
        tensors = [t for t in rdf.get(kind) or [] if isinstance(t, dict)]
        tests = rdf.get(f"test_{kind}") or []
        samples = rdf.get(f"sample_{kind}") or []
        for i, tensor in enumerate(tensors):
            label = str(tensor.get("id") or tensor.get("name") or f"{kind}[{i}]")
            test = _source(tensor.get("test_tensor")) or (
                _source(tests[i]) if i < len(tests) else None
            )
            sample = _source(tensor.get("sample_tensor")) or (
                _source(samples[i]) if i < len(samples) else None
            )
            files.append(TensorFiles(kind, label, test, sample, kind == "inputs" and i == 0))
    return files


def load_array(source: str, data: bytes) -> np.ndarray:
    """A test or sample tensor file as an array (.npy, .tif/.tiff, or any image PIL reads)."""
    suffix = PurePosixPath(source).suffix.lower()
    if suffix == ".npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(io.BytesIO(data))
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def _same_data(sample: np.ndarray, test: np.ndarray) -> bool:
    return sample.shape == test.shape and bool(
        np.allclose(
            sample.astype(np.float64), test.astype(np.float64), rtol=SAMPLE_RTOL, atol=SAMPLE_ATOL
        )
    )


def _compare(pair: TensorFiles, read: FileReader) -> str | None:
    """Why the sample tensor is not the test tensor's data, or None.

    Singleton axes are squeezed; a sample stored with its axes in another order (an image file
    with channels last, say) counts as the same data if some order of its axes matches.
    """
    assert pair.test is not None and pair.sample is not None
    try:
        test = np.squeeze(load_array(pair.test, read(pair.test)))
        sample = np.squeeze(load_array(pair.sample, read(pair.sample)))
    except Exception as err:
        return f"{pair.label}: cannot compare {pair.sample} with {pair.test} ({err})"
    if sorted(test.shape) != sorted(sample.shape):
        return f"{pair.label}: {pair.sample} has shape {sample.shape}, {pair.test} {test.shape}"
    orders = [
        order
        for order in itertools.permutations(range(sample.ndim))
        if tuple(sample.shape[i] for i in order) == test.shape
    ]
    if any(_same_data(sample.transpose(order), test) for order in orders):
        return None
    diff = float(np.max(np.abs(sample.transpose(orders[0]).astype(np.float64) - test)))
    return f"{pair.label}: {pair.sample} differs from {pair.test} (max |d| {diff:.3g})"


def check_sample_tensors(rdf: dict[str, Any], read: FileReader) -> CheckResult:
    pairs = [p for p in tensor_files(rdf) if p.test and p.sample]
    if not pairs:
        return ok("sample_tensors", "no sample tensors: deepImageJ CI converts the test tensor")
    errors, warnings = [], []
    for pair in pairs:
        problem = _compare(pair, read)
        if problem is not None:
            # Only the first input's sample runs in deepImageJ's CI; the others merely mislead.
            (errors if pair.first_input else warnings).append(problem)
    if errors:
        return fail("sample_tensors", "; ".join(errors + warnings))
    if warnings:
        return fail("sample_tensors", "; ".join(warnings), "warning")
    return ok(
        "sample_tensors",
        f"{len(pairs)} sample tensor(s) hold their test tensor's data (squeezed)",
    )


def check_pytorch_version(rdf: dict[str, Any]) -> CheckResult:
    from packaging.version import InvalidVersion, Version

    weights = rdf.get("weights") or {}
    present = [fmt for fmt in PYTORCH_WEIGHTS if isinstance(weights.get(fmt), dict)]
    if not present:
        return ok("pytorch_version", "no TorchScript or state-dict weights")
    problems, declared = [], []
    for fmt in present:
        value = weights[fmt].get("pytorch_version")
        if value is None:
            problems.append(f"{fmt} declares no pytorch_version (CI would use PyTorch 1.10)")
            continue
        try:
            declared.append(f"{fmt} {Version(str(value))}")
        except InvalidVersion:
            problems.append(f"{fmt}: pytorch_version {value!r} is not a version")
    if problems:
        return fail("pytorch_version", "; ".join(problems))
    return ok("pytorch_version", ", ".join(declared))


def run_checks(rdf: dict[str, Any], read: FileReader, *, online: bool = False) -> list[CheckResult]:
    """Every static collection check of one package, in a fixed order (no bioimageio.core run).

    Offline (default) no network is used; `online=True` looks up each `github_user` on GitHub.
    """
    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("name", lambda: check_name(rdf)),
        ("description", lambda: check_description(rdf)),
        ("license", lambda: check_license(rdf, read)),
        ("documentation", lambda: check_documentation(rdf, read)),
        ("covers", lambda: check_covers(rdf, read)),
        ("identifier", lambda: check_identifier(rdf)),
        ("maintainers", lambda: check_maintainers(rdf)),
        ("author_github_user", lambda: check_author_github_user(rdf)),
        ("github_user", lambda: check_github_users(rdf, online=online)),
        ("sample_tensors", lambda: check_sample_tensors(rdf, read)),
        ("pytorch_version", lambda: check_pytorch_version(rdf)),
    ]
    return [_guard(name, check) for name, check in checks]
