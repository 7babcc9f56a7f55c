"""The README's Python API example runs as written, on a small simulated data set."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sparsessp_bmz.data.config import SimulationSettings
from sparsessp_bmz.data.simulate.writer import simulate

REPO = Path(__file__).resolve().parents[1]


def _api_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.DOTALL)
    return code


def test_readme_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "training").mkdir()
    shutil.copy(REPO / "training" / "demo.yaml", tmp_path / "training" / "demo.yaml")
    settings = SimulationSettings(cells=4, structures=("dna",), seed=1, shape=(16, 64, 64))
    simulate(settings, tmp_path / "demo_output" / "data")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_api_example(), "README.md", "exec"), namespace)  # the example itself
    outcome = namespace["outcome"]
    assert outcome.passed  # type: ignore[attr-defined]
    assert [p.archive.name for p in outcome.packages] == [  # type: ignore[attr-defined]
        "sparsessp-dna-r4-3to2d.zip",
        "sparsessp-dna-r4-3to2d-dense.zip",
    ]
    assert namespace["prediction"].shape == (16, 64, 64)  # type: ignore[attr-defined]
