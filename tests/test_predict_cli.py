"""`sparsessp-bmz predict` and `evaluate` end to end on files, with a tiny network."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from predict_fixtures import checkpoint
from typer.testing import CliRunner

from sparsessp_bmz.cli import app
from sparsessp_bmz.imageio import write_ome_tiff

runner = CliRunner()

__all__ = ["checkpoint"]  # fixtures


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def test_sparse_input_gives_an_r_times_deeper_ome_tiff_with_voxel_sizes(
    tmp_path: Path, checkpoint: Path
) -> None:
    from bioio import BioImage

    tl = np.random.default_rng(0).normal(size=(7, 40, 36)).astype(np.float32)
    write_ome_tiff(tmp_path / "tl.ome.tif", tl, (0.58, 0.29, 0.29))
    result = invoke("predict", checkpoint, tmp_path / "tl.ome.tif", tmp_path / "pred.ome.tif")
    assert result.exit_code == 0, result.output
    image = BioImage(tmp_path / "pred.ome.tif")
    assert image.get_image_data("ZYX").shape == (14, 40, 36)
    assert image.get_image_data("ZYX").dtype == np.float32
    assert tuple(image.physical_pixel_sizes) == pytest.approx((0.29, 0.29, 0.29))


def test_dense_input_with_phase_is_subsampled_first(tmp_path: Path, checkpoint: Path) -> None:
    from bioio import BioImage

    tl = np.random.default_rng(1).normal(size=(9, 32, 32)).astype(np.float32)
    write_ome_tiff(tmp_path / "dense.ome.tif", tl, (0.29, 0.29, 0.29))
    out = tmp_path / "pred.ome.tif"
    result = invoke("predict", checkpoint, tmp_path / "dense.ome.tif", out, "--phase", "1")
    assert result.exit_code == 0, result.output
    assert BioImage(out).get_image_data("ZYX").shape == (8, 32, 32)  # slices 1, 3, 5, 7 -> 8


def test_a_ratio_other_than_the_models_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    write_ome_tiff(tmp_path / "tl.ome.tif", np.ones((8, 32, 32), np.float32), (0.29,) * 3)
    result = invoke(
        "predict", checkpoint, tmp_path / "tl.ome.tif", tmp_path / "p.ome.tif", "--ratio", "4"
    )
    assert result.exit_code != 0
    assert "differs from the model's sparsity ratio r=2" in str(result.exception)
    assert not (tmp_path / "p.ome.tif").exists()


def test_evaluate_writes_both_csvs_for_the_test_split(tmp_path: Path, checkpoint: Path) -> None:
    rng = np.random.default_rng(2)
    lines = ["path_signal,path_target,structure"]
    for cell in range(4):
        write_ome_tiff(tmp_path / f"tl{cell}.ome.tif", rng.normal(size=(8, 32, 32)), (0.29,) * 3)
        write_ome_tiff(tmp_path / f"fl{cell}.ome.tif", rng.normal(size=(8, 32, 32)), (0.29,) * 3)
        lines.append(f"tl{cell}.ome.tif,fl{cell}.ome.tif,dna")
    (tmp_path / "cells.csv").write_text("\n".join(lines) + "\n")
    result = invoke(
        "evaluate", checkpoint, tmp_path / "cells.csv", "--split", "test", "--out", tmp_path / "ev"
    )
    assert result.exit_code == 0, result.output
    assert "sparsessp-dna-r2-3to2d" in result.output
    with (tmp_path / "ev" / "summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert [row["structure"] for row in summary] == ["dna", "All"]
    with (tmp_path / "ev" / "per_image.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 1
