"""Training patches: aligned sparse input under every flip, deterministic, bounded cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from data_fixtures import ome_tiff, random_stack, small_simulation, write_csv  # noqa: F401

from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.dataset import SparsePatchDataset
from sparsessp_bmz.data.manifest import read_manifest
from sparsessp_bmz.errors import UserInputError


def _identical_pair_dataset(tmp_path: Path, ratio: int, depth: int = 21, **settings):
    """TL and target are the same random volume, so alignment is visible voxel by voxel."""
    ome_tiff(tmp_path / "v.ome.tif", random_stack((1, depth, 20, 20)))
    manifest = write_csv(tmp_path / "m.csv", "path_signal,path_target", "v.ome.tif,v.ome.tif")
    data = DataSettings(manifest=manifest, samples_per_epoch=64, **settings)
    return SparsePatchDataset(read_manifest(manifest), data, patch=(8, 12, 12), ratio=ratio)


@pytest.mark.parametrize("ratio", [1, 2, 4, 8])
def test_input_slice_k_is_target_slice_k_times_r_under_every_flip(tmp_path, ratio) -> None:
    dataset = _identical_pair_dataset(tmp_path, ratio)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["input"].shape == (1, 8 // ratio, 12, 12)
        assert sample["target"].shape == (1, 8, 12, 12)
        torch.testing.assert_close(sample["input"], sample["target"][:, ::ratio])


def test_crops_vary_between_samples(tmp_path: Path) -> None:
    dataset = _identical_pair_dataset(tmp_path, 4)
    corners = {tuple(dataset[i]["target"][0, 0, 0, :2].tolist()) for i in range(64)}
    assert len(corners) > 32


def test_samples_depend_on_seed_epoch_and_index_only(tmp_path: Path) -> None:
    dataset = _identical_pair_dataset(tmp_path, 2)
    forward = [dataset[i]["target"] for i in range(10)]
    backward = [dataset[i]["target"] for i in reversed(range(10))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward, strict=True))
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0]["target"], forward[0])


def test_two_loader_workers_give_the_same_batches_as_one_process(tmp_path: Path) -> None:
    dataset = _identical_pair_dataset(tmp_path, 2)
    single = [b["target"] for b in torch.utils.data.DataLoader(dataset, batch_size=8)]
    workers = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2)
    assert all(torch.equal(a, b["target"]) for a, b in zip(single, workers, strict=True))


def test_a_stack_shallower_than_the_patch_is_refused_naming_the_row(tmp_path: Path) -> None:
    dataset = _identical_pair_dataset(tmp_path, 2, depth=6)
    with pytest.raises(UserInputError, match=r"m.csv line 2: .*smaller than the patch"):
        dataset[0]


def test_patch_depth_must_be_a_multiple_of_the_ratio(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="multiple of the sparsity ratio"):
        _identical_pair_dataset(tmp_path, 3)


def test_simulated_split_yields_tasks_indexed_by_sorted_structure(small_simulation) -> None:  # noqa: F811
    two_volumes_mb = 2 * 24 * 48 * 48 * 4 / 2**20
    settings = DataSettings(
        manifest=small_simulation, samples_per_epoch=16, cache_mb=two_volumes_mb
    )
    dataset = SparsePatchDataset.from_settings(settings, "train", patch=(16, 32, 32), ratio=4)
    assert dataset.structures == ["dna", "mitochondria"]
    tasks = {(s["structure"], s["task"]) for s in (dataset[i] for i in range(16))}
    assert tasks <= {("dna", 0), ("mitochondria", 1)}
    assert len(dataset.cache) <= 2
