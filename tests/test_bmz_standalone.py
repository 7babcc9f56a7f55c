"""A package needs nothing of this project: it passes `bioimageio test` where the project is absent.

- With this project's bioimageio.core (0.11) in a subprocess in which `import sparsessp_bmz`
  fails: the state dict must build from the architecture source shipped in the package.
- With the bioimageio.core versions of the consumers that validate uploads or run packages
  (slow: a cached venv per version): 0.10.4 (the BMZ model runner that validates uploads) and
  0.10.2 (ilastik's tiktorch pin). A package only 0.11 can read fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bmz_fixtures import exported_3d, exported_3to2d, exported_dense_3to2d, exported_plane
from venv_fixtures import (
    PROJECT_MODULE,
    assert_every_format_passes,
    bioimageio_test,
    env_without_the_project,
    old_core_venv,
)

__all__ = ["exported_3d", "exported_3to2d", "exported_dense_3to2d", "exported_plane"]  # fixtures

BIOIMAGEIO = Path(sys.executable).with_name("bioimageio")

#: BMZ model runner (upload validation) and ilastik's tiktorch.
OLD_CORES = ("0.10.4", "0.10.2")


def _assert_project_is_hidden(env: dict[str, str], cwd: Path) -> None:
    """The blocker works: this very interpreter cannot import the project under `env`."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {PROJECT_MODULE}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, done.stderr


@pytest.mark.slow  # the default run has it for the published package (test_bmz_publish.py)
@pytest.mark.parametrize("package", ["exported_3to2d", "exported_3d"])
def test_bioimageio_test_passes_without_the_project(
    package: str, request: pytest.FixtureRequest, tmp_path: Path
):
    zip_path: Path = request.getfixturevalue(package)
    env = env_without_the_project(tmp_path / "blocker")
    _assert_project_is_hidden(env, tmp_path)
    result = bioimageio_test([str(BIOIMAGEIO)], zip_path, tmp_path / "run", env)
    assert_every_format_passes(result)


@pytest.mark.slow
@pytest.mark.parametrize("core", OLD_CORES)
@pytest.mark.parametrize(
    "package", ["exported_3to2d", "exported_3d", "exported_dense_3to2d", "exported_plane"]
)
def test_package_passes_bioimageio_core_0_10(
    core: str, package: str, request: pytest.FixtureRequest, tmp_path: Path
):
    venv = old_core_venv(core)  # first build ~2.5 min (torch, then the rest); cached after
    python = venv / "bin" / "python"
    zip_path: Path = request.getfixturevalue(package)
    env = env_without_the_project(tmp_path / "blocker")
    version = subprocess.run(
        [str(python), "-c", "import bioimageio.core as c; print(c.__version__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == core
    result = bioimageio_test([str(python), "-m", "bioimageio.core"], zip_path, tmp_path, env)
    assert_every_format_passes(result)
