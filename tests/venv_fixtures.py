"""Python environments that lack this project, and the `bioimageio test` CLI run inside them.

- `env_without_the_project`: environment variables under which `import sparsessp_bmz` fails in any
  interpreter (a `sitecustomize.py` puts a blocking finder first on `sys.meta_path`).
- `old_core_venv`: a cached virtual environment with an older bioimageio.core (the versions the
  BMZ upload runner and ilastik's tiktorch pin), built once per set of requirements.
- `bioimageio_test`: runs `bioimageio test --summary x.json` and reads the result per weight format.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_MODULE = "sparsessp_bmz"
WEIGHT_FORMATS = ("onnx", "pytorch_state_dict", "torchscript")

_SITECUSTOMIZE = f'''"""From tests/venv_fixtures.py: {PROJECT_MODULE} cannot be imported here."""

import sys


class _BlockProject:
    def find_spec(self, name, path=None, target=None):
        if name == "{PROJECT_MODULE}" or name.startswith("{PROJECT_MODULE}."):
            message = f"No module named {{name!r}} (blocked by the test)"
            raise ModuleNotFoundError(message, name=name)
        return None


sys.meta_path.insert(0, _BlockProject())
'''


_KNOWN_ACCOUNTS = """
# This machine has no network: bioimageio.spec would ask api.github.com about every github_user
# of the package and fail; it skips names it knows (bioimageio.spec _internal/constants.py
# KNOWN_GITHUB_USERS), as the online collection CI would find them.
from bioimageio.spec._internal.constants import KNOWN_GITHUB_USERS

KNOWN_GITHUB_USERS.update({users!r})
"""


def env_without_the_project(
    folder: Path, known_github_users: tuple[str, ...] = ()
) -> dict[str, str]:
    """Environment variables under which no interpreter can import this project.

    `sitecustomize` runs after the `.pth` files (the editable install's finder), and the blocker is
    put first on `sys.meta_path`, so it wins over the editable finder and over any `src` on
    `PYTHONPATH`. Run the subprocess with a `cwd` outside the repository as well.
    `known_github_users` are accounts bioimageio.spec is told exist, for packages that name them
    (offline it cannot look them up).
    """
    folder.mkdir(parents=True, exist_ok=True)
    code = _SITECUSTOMIZE
    if known_github_users:
        code += _KNOWN_ACCOUNTS.format(users={u.lower() for u in known_github_users})
    (folder / "sitecustomize.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(folder)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# --- `bioimageio test` and its summary ----------------------------------------------------------


@dataclass
class FormatOutcome:
    """All summary details of one weight format."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "name: error; error"

    @property
    def status(self) -> str:
        if self.failed:
            return "failed"
        return "passed" if self.passed else "not tested"


@dataclass
class CliResult:
    returncode: int
    status: (
        str  # the summary's overall status ("passed", "valid-format", "failed"), or "no summary"
    )
    format_version: str | None
    formats: dict[str, FormatOutcome]
    general_errors: list[str]  # failed details that belong to no weight format (RDF validation)
    output: str
    seconds: float

    def statuses(self) -> dict[str, str]:
        return {fmt: self.formats.get(fmt, FormatOutcome()).status for fmt in WEIGHT_FORMATS}

    def explain(self) -> str:
        lines = [
            f"bioimageio test: rc={self.returncode}, status={self.status}, "
            f"format_version={self.format_version}, {self.seconds:.1f} s"
        ]
        lines += [f"  (rdf) {error}" for error in self.general_errors]
        for fmt in WEIGHT_FORMATS:
            outcome = self.formats.get(fmt, FormatOutcome())
            lines.append(f"  {fmt}: {outcome.status}")
            lines += [f"    {failure}" for failure in outcome.failed]
        if self.status == "no summary" or self.general_errors:
            lines.append("output tail:\n" + self.output[-3000:])
        return "\n".join(lines)


def _reproduce_name(fmt: str) -> str:
    return f"Reproduce test outputs from test inputs ({fmt})"


def parse_summary(summary: dict) -> tuple[dict[str, FormatOutcome], list[str]]:
    """Per weight format outcomes and the failures of no format, from a summary's JSON."""
    formats: dict[str, FormatOutcome] = {}
    general: list[str] = []
    for detail in summary.get("details", []):
        loc = list(detail.get("loc") or [])
        name = detail.get("name", "?")
        errors = "; ".join(str(e.get("msg", e))[:500] for e in detail.get("errors", []))
        failed = detail.get("status") == "failed"
        if len(loc) >= 2 and loc[0] == "weights":
            outcome = formats.setdefault(str(loc[1]), FormatOutcome())
            (outcome.failed if failed else outcome.passed).append(
                f"{name}: {errors}" if failed else name
            )
        elif failed:
            general.append(f"{name}: {errors}")
    return formats, general


def bioimageio_test(
    command: list[str],
    source: Path,
    work: Path,
    env: dict[str, str],
    timeout: float = 900,
) -> CliResult:
    """Run `<command> test <source> --summary <work>/summary.json` in `work`; read the summary.

    `command` is the CLI (`[".../bin/bioimageio"]` or `[python, "-m", "bioimageio.core"]`).
    """
    work.mkdir(parents=True, exist_ok=True)
    summary_path = work / "summary.json"
    summary_path.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "test", str(source), "--summary", str(summary_path)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    if not summary_path.is_file():
        return CliResult(done.returncode, "no summary", None, {}, [], output, seconds)
    summary = json.loads(summary_path.read_text())
    formats, general = parse_summary(summary)
    return CliResult(
        returncode=done.returncode,
        status=summary.get("status", "?"),
        format_version=summary.get("format_version"),
        formats=formats,
        general_errors=general,
        output=output,
        seconds=seconds,
    )


def assert_every_format_passes(result: CliResult) -> None:
    """Every weight format reproduced its test output and ran at every tested size."""
    message = result.explain()
    assert not result.general_errors, message
    for fmt in WEIGHT_FORMATS:
        outcome = result.formats.get(fmt, FormatOutcome())
        assert outcome.status == "passed", message
        # the reproduction check itself ran (guards against a runner that skips checks)
        assert _reproduce_name(fmt) in outcome.passed, message
    assert result.status == "passed" and result.returncode == 0, message


# --- cached virtual environments with an older bioimageio.core ---------------------------------

#: Installed first, alone: an unpinned torch would pull a CUDA build (gigabytes).
TORCH_PIN = "torch==2.13.0"
#: bioimageio.spec 0.5.9/0.5.10 break with pydantic 2.14 ("'index_key' is expected to be an
#: integer or a string, got 'SerializationInfo(...)'" from `package_file_descr_serializer`, so
#: every package fails format validation); the BMZ runner tests with onnxruntime 1.20.
OLD_CORE_EXTRAS = ("pydantic>=2.12,<2.14", "onnxruntime==1.20.1")

VENV_CACHE = Path(
    os.environ.get("SPARSESSP_TEST_VENVS", Path.home() / ".cache" / "sparsessp-bmz-test-venvs")
)


def _python_tag() -> str:
    return f"py{sys.version_info.major}{sys.version_info.minor}"


def _requirements(core: str) -> list[str]:
    return [f"bioimageio.core=={core}", *OLD_CORE_EXTRAS]


def old_core_venv_path(core: str) -> Path:
    key = "\n".join([sys.version, TORCH_PIN, *_requirements(core)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return VENV_CACHE / f"core-{core}-{_python_tag()}-{digest}"


def _pip(python: Path, *args: str) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def old_core_venv(core: str) -> Path:
    """A venv with torch==2.13.0, then bioimageio.core==`core`; its python is `<venv>/bin/python`.

    Built once per (Python, requirements) under `VENV_CACHE` (`$SPARSESSP_TEST_VENVS` overrides).
    It is built in a temporary folder beside its final place and renamed when complete, so an
    interrupted build leaves no half-made venv behind (only a `.tmp-*` folder, removed next time
    it is older than a day). Console scripts in a renamed venv point at the old folder: call
    `<venv>/bin/python -m bioimageio.core`, not `<venv>/bin/bioimageio`.
    """
    final = old_core_venv_path(core)
    if (final / "bin" / "python").exists():
        return final
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    for stale in VENV_CACHE.glob(".tmp-*"):
        if time.time() - stale.stat().st_mtime > 86400:
            shutil.rmtree(stale, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=VENV_CACHE))
    try:
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(building)], check=True, capture_output=True)
        python = building / "bin" / "python"
        _pip(python, TORCH_PIN)
        _pip(python, TORCH_PIN, *_requirements(core))
        subprocess.run(
            [str(python), "-c", "import bioimageio.core, onnxruntime, torch"],
            check=True,
            capture_output=True,
        )
        freeze = subprocess.run(
            [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
        )
        (building / "requirements-frozen.txt").write_text(freeze.stdout)
        try:
            building.rename(final)
        except OSError:  # another process finished first
            if not (final / "bin" / "python").exists():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final
