"""The end-to-end demo on a tiny matrix: simulate -> train -> evaluate -> export -> validate."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from sparsessp_bmz.demo import DemoSettings, run_demo

REPO = Path(__file__).resolve().parents[1]


TINY = "optim.max_steps=3, data.samples_per_epoch=8, optim.val_samples=2, optim.batch_size=2"


def _tiny_matrix(tmp_path: Path) -> Path:
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        f"base: {REPO / 'training' / 'demo.yaml'}\n"
        "organelles: [dna]\nratios: [4]\ntopologies: [3to2d]\n"
        f"overrides: [{TINY}, 'model.patch=[16,32,32]']\n",
        encoding="utf-8",
    )
    return matrix


def _tiny_plane_matrix(tmp_path: Path) -> Path:
    matrix = tmp_path / "plane_matrix.yaml"
    matrix.write_text(
        f"base: {REPO / 'training' / 'plane.yaml'}\n"
        "organelles: [dna]\nratios: [1]\ntopologies: [2d]\n"
        f"overrides: [{TINY}, 'model.patch=[1,32,32]']\n",
        encoding="utf-8",
    )
    return matrix


def test_demo_leaves_a_validated_package_and_reruns_without_retraining(tmp_path: Path):
    settings = DemoSettings(
        matrices=(_tiny_matrix(tmp_path), _tiny_plane_matrix(tmp_path)),
        work_dir=tmp_path / "work",
        packages_dir=tmp_path / "packages",
        cells=4,
        shape=(16, 32, 32),
        workers=1,
    )
    console = Console(file=io.StringIO())
    result = run_demo(settings, console)

    assert result.passed, result.rows
    ids = ["sparsessp-dna-r4-3to2d", "sparsessp-dna-r4-3to2d-dense", "sparsessp-dna-r1-2d-plane"]
    assert [row.package_id for row in result.rows] == ids
    assert [row.variant for row in result.rows] == ["standard", "dense", "plane"]
    assert all(row.steps == 3 for row in result.rows)
    for row in result.rows:
        assert Path(row.package).is_file() and (settings.packages_dir / row.package_id).is_dir()
    index = json.loads((settings.packages_dir / "index.json").read_text())
    assert [entry["id"] for entry in index["packages"]] == sorted(ids)
    assert "sparsessp-dna-r1-2d-plane" in (settings.work_dir / "summary.md").read_text()

    again = run_demo(settings, console)
    assert again.passed and {row.status for row in again.rows} == {"already finished"}
