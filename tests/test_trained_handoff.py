"""What training hands to evaluation and export: the whole data settings and typed facts."""

from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import tifffile
import yaml
from bmz_fixtures import synthetic_volume
from data_fixtures import write_csv
from training_fixtures import tiny_raw
from typer.testing import CliRunner

from sparsessp_bmz.cli import app
from sparsessp_bmz.training.checkpoint import load_trained
from sparsessp_bmz.training.config import config_from_mapping
from sparsessp_bmz.training.run import train

FALLBACK = [0.5, 0.29, 0.29]


def _plain_tiffs(folder: Path, fields: int = 4) -> Path:
    """Signal and target stacks as plain TIFFs that record no voxel size, and their manifest."""
    folder.mkdir()
    rows = []
    for index in range(fields):
        tl, target = synthetic_volume(depth=16, size=48, seed=index)
        for kind, volume in (("tl", tl), ("dna", target)):
            data = (volume - volume.min()) / (np.ptp(volume) + 1e-6) * 4000
            tifffile.imwrite(folder / f"{kind}{index}.tif", data.astype(np.uint16))
        rows.append(f"tl{index}.tif,dna{index}.tif,dna")
    return write_csv(folder / "manifest.csv", "path_signal,path_target,structure", *rows)


def test_a_model_trained_on_plain_tiffs_with_a_fallback_voxel_size_evaluates_and_exports(
    tmp_path: Path,
):
    manifest = _plain_tiffs(tmp_path / "data")
    raw = tiny_raw(manifest, tmp_path / "run", max_steps=2)
    raw["data"]["fallback_voxel_size_um"] = FALLBACK
    checkpoint = train(config_from_mapping(raw, "test")).best_checkpoint

    trained = load_trained(checkpoint)
    assert trained.data is not None and list(trained.data.fallback_voxel_size_um) == FALLBACK
    assert isinstance(trained.facts.saved_at, datetime) and trained.facts.global_step == 2
    assert trained.facts.lr is not None and trained.facts.batch_size == 2

    runner = CliRunner()
    evaluated = runner.invoke(app, ["evaluate", str(checkpoint), str(manifest)])
    assert evaluated.exit_code == 0, evaluated.output
    exported = runner.invoke(app, ["export", str(checkpoint), "--out", str(tmp_path / "pk")])
    assert exported.exit_code == 0, exported.output
    archive = tmp_path / "pk" / "sparsessp-dna-r2-3to2d.zip"
    rdf = yaml.safe_load(zipfile.ZipFile(archive).read("rdf.yaml"))
    assert rdf["config"]["sparsessp"]["test_metrics"]["r2"] is not None
    assert rdf["timestamp"].startswith(trained.facts.saved_at.isoformat()[:19])
