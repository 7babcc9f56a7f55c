"""Reading a user's TL stack for prediction and writing the OME-TIFF result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.imageio import (
    ExpectedInput,
    expected_sparse_shape,
    read_prediction_input,
    write_ome_tiff,
)

GRID = (0.29, 0.29, 0.29)


def test_ome_tiff_round_trips_data_and_voxel_size(tmp_path: Path) -> None:
    from bioio import BioImage

    volume = np.random.default_rng(0).normal(size=(6, 20, 24)).astype(np.float32)
    path = tmp_path / "sub" / "pred.ome.tif"
    write_ome_tiff(path, volume, (0.145, 0.29, 0.29))
    image = BioImage(path)
    assert tuple(image.physical_pixel_sizes) == pytest.approx((0.145, 0.29, 0.29))
    np.testing.assert_array_equal(image.get_image_data("ZYX"), volume)
    assert [p.name for p in path.parent.iterdir()] == ["pred.ome.tif"]  # no temp file left


def test_sparse_input_is_z_scored_and_keeps_all_its_slices(tmp_path: Path) -> None:
    volume = np.random.default_rng(1).normal(5, 3, size=(5, 16, 16)).astype(np.float32)
    write_ome_tiff(tmp_path / "tl.ome.tif", volume, (0.58, 0.29, 0.29))
    prepared = read_prediction_input(tmp_path / "tl.ome.tif", ratio=2, model_voxel_size_um=GRID)
    assert prepared.sparse.shape == (5, 16, 16)
    assert not prepared.resampled
    assert prepared.sparse.mean() == pytest.approx(0.0, abs=1e-5)
    assert prepared.sparse.std() == pytest.approx(1.0, abs=1e-4)
    assert prepared.output_voxel_size_um == GRID


def test_dense_input_is_subsampled_on_the_grid_at_the_phase(tmp_path: Path) -> None:
    volume = np.arange(9, dtype=np.float32)[:, None, None] * np.ones((9, 16, 16), np.float32)
    tifffile.imwrite(tmp_path / "dense.tif", volume)  # plain TIFF: no voxel size recorded
    prepared = read_prediction_input(
        tmp_path / "dense.tif", ratio=4, model_voxel_size_um=GRID, dense_phase=1
    )
    levels = prepared.sparse[:, 0, 0]
    assert prepared.sparse.shape == (2, 16, 16)  # slices 1 and 5
    expected = (np.array([1.0, 5.0]) - 4.0) / np.arange(9).std()
    np.testing.assert_allclose(levels, expected, rtol=1e-5)


def test_input_on_another_grid_is_resampled_to_the_models(tmp_path: Path) -> None:
    volume = np.random.default_rng(2).normal(size=(4, 32, 32)).astype(np.float32)
    write_ome_tiff(tmp_path / "fine.ome.tif", volume, (0.58, 0.145, 0.145))
    prepared = read_prediction_input(tmp_path / "fine.ome.tif", ratio=2, model_voxel_size_um=GRID)
    assert prepared.resampled
    assert prepared.sparse.shape[1:] == (16, 16)


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        read_prediction_input(tmp_path / "nope.tif", ratio=2, model_voxel_size_um=GRID)


def test_corrupt_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(UserInputError, match="cannot read"):
        read_prediction_input(tmp_path / "broken.tif", ratio=2, model_voxel_size_um=GRID)


def test_nan_values_are_refused(tmp_path: Path) -> None:
    volume = np.zeros((4, 16, 16), np.float32)
    volume[1, 2, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", volume, photometric="minisblack")
    with pytest.raises(UserInputError, match="1 NaN or infinite"):
        read_prediction_input(tmp_path / "nan.tif", ratio=2, model_voxel_size_um=GRID)


def test_a_single_plane_is_refused_as_not_a_z_stack(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "plane.tif", np.ones((16, 16), np.float32))
    with pytest.raises(UserInputError, match="single 2D plane"):
        read_prediction_input(tmp_path / "plane.tif", ratio=2, model_voxel_size_um=GRID)


def test_too_few_slices_after_subsampling_suggests_what_to_check(tmp_path: Path) -> None:
    volume = np.random.default_rng(3).normal(size=(4, 16, 16)).astype(np.float32)
    tifffile.imwrite(tmp_path / "short.tif", volume, photometric="minisblack")
    with pytest.raises(UserInputError, match="only 1 sparse slice"):
        read_prediction_input(
            tmp_path / "short.tif", ratio=4, model_voxel_size_um=GRID, dense_phase=0
        )


def test_channel_out_of_range_is_refused(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "tl.tif", np.ones((4, 16, 16), np.float32), photometric="minisblack"
    )
    with pytest.raises(UserInputError, match="channel 2 is out of range"):
        read_prediction_input(tmp_path / "tl.tif", ratio=2, model_voxel_size_um=GRID, channel=2)


def test_three_slices_stored_as_rgb_get_a_hint_on_how_to_save_them(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "rgb.tif", np.ones((3, 16, 16), np.float32))
    with pytest.raises(UserInputError, match="photometric='minisblack'"):
        read_prediction_input(tmp_path / "rgb.tif", ratio=2, model_voxel_size_um=GRID)


@pytest.mark.parametrize(
    ("voxel", "dense_phase"),
    [((0.58, 0.29, 0.29), None), ((0.29, 0.29, 0.29), 1), ((0.58, 0.2, 0.35), None)],
    ids=["sparse", "dense", "resampled"],
)
def test_the_sparse_shape_from_metadata_is_the_shape_read(
    tmp_path: Path, voxel: tuple[float, float, float], dense_phase: int | None
) -> None:
    path = tmp_path / "tl.ome.tif"
    write_ome_tiff(
        path, np.random.default_rng(0).normal(size=(9, 30, 41)).astype(np.float32), voxel
    )
    kwargs = {"ratio": 2, "model_voxel_size_um": (0.29,) * 3, "dense_phase": dense_phase}
    expected = expected_sparse_shape(path, **kwargs)  # type: ignore[arg-type]
    read = read_prediction_input(path, **kwargs)  # type: ignore[arg-type]
    assert expected == ExpectedInput(read.sparse.shape, read.resampled)  # type: ignore[arg-type]
