"""Whole volumes via the manifest: CZI and OME-TIFF, voxel sizes, resampling, z-score, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from data_fixtures import ome_tiff, random_stack, write_csv, write_czi

from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.manifest import read_manifest
from sparsessp_bmz.data.volumes import VolumeCache, load_pair
from sparsessp_bmz.errors import UserInputError

CZI_HEADER = "path_czi,channel_signal,channel_target,structureProteinName"


def _pair(manifest: Path, **settings):
    (row,) = read_manifest(manifest)
    return load_pair(row, DataSettings(manifest=manifest, **settings))


def test_czi_voxel_sizes_drive_resampling_to_the_target_grid(tmp_path: Path) -> None:
    # AllenCell geometry: xy 0.108 um, z 0.29 um -> xy shrinks by 0.108 / 0.29.
    write_czi(tmp_path / "cell.czi", random_stack((3, 6, 58, 87)), (0.29, 0.108, 0.108))
    manifest = write_csv(tmp_path / "m.csv", CZI_HEADER, "cell.czi,2,1,dna")
    pair = _pair(manifest)
    assert pair.signal.shape == pair.target.shape == (6, 22, 32)
    assert pair.voxel_size_um == (0.29, 0.29, 0.29)
    for volume in (pair.signal, pair.target):
        assert volume.dtype == np.float32
        assert abs(float(volume.mean())) < 1e-4 and abs(float(volume.std()) - 1) < 1e-3


def test_ome_tiff_pair_layout_reads_the_named_channels(tmp_path: Path) -> None:
    data = random_stack((2, 5, 16, 16))
    ome_tiff(tmp_path / "s.ome.tif", data[:1], (0.58, 0.29, 0.29))
    ome_tiff(tmp_path / "t.ome.tif", data, (0.58, 0.29, 0.29))
    manifest = write_csv(
        tmp_path / "m.csv", "path_signal,path_target,channel_target", "s.ome.tif,t.ome.tif,1"
    )
    pair = _pair(manifest)
    assert pair.target.shape == (10, 16, 16)  # z resampled from 0.58 to 0.29 um
    expected = np.interp(np.linspace(0, 4, 10), np.arange(5), data[1, :, 3, 3].astype(float))
    assert np.corrcoef(pair.target[:, 3, 3], expected)[0, 1] > 0.999


def test_a_plain_tiff_needs_a_fallback_voxel_size(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "s.tif", random_stack((4, 8, 8)), metadata={"axes": "ZYX"})
    manifest = write_csv(tmp_path / "p.csv", "path_signal,path_target", "s.tif,s.tif")
    with pytest.raises(UserInputError, match="fallback_voxel_size_um"):
        _pair(manifest)
    assert _pair(manifest, fallback_voxel_size_um=(0.29, 0.29, 0.29)).signal.shape == (4, 8, 8)


def test_reading_a_plain_tiff_logs_no_reader_probing_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tifffile.imwrite(tmp_path / "s.tif", random_stack((4, 8, 8)), metadata={"axes": "ZYX"})
    manifest = write_csv(tmp_path / "p.csv", "path_signal,path_target", "s.tif,s.tif")
    with caplog.at_level(logging.WARNING):
        _pair(manifest, fallback_voxel_size_um=(0.29, 0.29, 0.29))
    assert not [r for r in caplog.records if r.name.startswith("bioio")]


@pytest.mark.parametrize("slices", [3, 4])
def test_a_stack_that_tifffile_stored_as_rgb_is_refused_not_cut_to_one_slice(
    tmp_path: Path, slices: int
) -> None:
    tifffile.imwrite(tmp_path / "s.tif", random_stack((slices, 8, 8)).astype(np.float32))
    manifest = write_csv(tmp_path / "p.csv", "path_signal,path_target", "s.tif,s.tif")
    with pytest.raises(UserInputError, match=rf"{slices}-sample.*photometric='minisblack'"):
        _pair(manifest, fallback_voxel_size_um=(0.29, 0.29, 0.29))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (np.full((4, 8, 8), 7, np.float32), "constant"),
        (np.where(np.eye(8)[None] > 0, np.nan, 1.0).repeat(4, 0).astype(np.float32), "NaN"),
        (random_stack((4, 8, 9)).astype(np.float32), "differ in shape"),
    ],
)
def test_unusable_targets_are_refused_naming_the_row(tmp_path, target, message) -> None:
    ome_tiff(tmp_path / "s.ome.tif", random_stack((1, 4, 8, 8)))
    ome_tiff(tmp_path / "t.ome.tif", target[None])
    manifest = write_csv(tmp_path / "m.csv", "path_signal,path_target", "s.ome.tif,t.ome.tif")
    with pytest.raises(UserInputError, match=message) as err:
        _pair(manifest)
    assert "m.csv line 2" in str(err.value)


def test_a_channel_beyond_the_file_is_refused_naming_the_row(tmp_path: Path) -> None:
    ome_tiff(tmp_path / "c.ome.tif", random_stack((2, 4, 8, 8)))
    manifest = write_csv(tmp_path / "m.csv", CZI_HEADER, "c.ome.tif,0,5,dna")
    with pytest.raises(UserInputError, match=r"m.csv line 2: channel 5 is out of range.*2 channel"):
        _pair(manifest)


def test_the_cache_stays_within_its_budget_and_keeps_the_newest(tmp_path: Path) -> None:
    paths = [
        ome_tiff(tmp_path / f"c{i}.ome.tif", random_stack((2, 8, 32, 32), i)) for i in range(6)
    ]
    rows = [f"{p.name},0,1,dna" for p in paths]
    manifest = write_csv(tmp_path / "m.csv", CZI_HEADER, *rows)
    settings = DataSettings(manifest=manifest)
    one_volume = 8 * 32 * 32 * 4
    cache = VolumeCache(budget_mb=3 * one_volume / 2**20)
    for row in read_manifest(manifest):
        pair = load_pair(row, settings, cache)
    assert len(cache) == 3 and cache.nbytes <= 3 * one_volume
    assert cache.get((paths[-1].resolve(), 1)) is not None
    assert load_pair(row, settings, cache).target is pair.target  # served from the cache
