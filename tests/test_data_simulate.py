"""The simulator: deterministic files in the real-data layout, and TL that carries the signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bioio import BioImage
from data_fixtures import small_simulation  # noqa: F401
from scipy.ndimage import gaussian_filter, gaussian_gradient_magnitude

from sparsessp_bmz.data.config import SimulationSettings
from sparsessp_bmz.data.simulate.writer import masks_path, simulate_cell


def test_files_record_voxel_sizes_and_channels_tl_first(small_simulation: Path) -> None:  # noqa: F811
    image = BioImage(small_simulation.parent / "images" / "cell_0000.ome.tif")
    assert tuple(image.physical_pixel_sizes) == (0.29, 0.29, 0.29)
    assert list(image.channel_names) == ["TL", "dna", "mitochondria"]
    assert (image.dims.Z, image.dims.Y, image.dims.X) == (24, 48, 48)
    lines = small_simulation.read_text().splitlines()
    assert lines[0] == "path_czi,channel_signal,channel_target,structureProteinName"
    assert lines[1:3] == [
        "images/cell_0000.ome.tif,0,1,dna",
        "images/cell_0000.ome.tif,0,2,mitochondria",
    ]


def test_a_field_depends_on_seed_and_index_not_on_the_structures_asked() -> None:
    every = SimulationSettings(seed=5, shape=(16, 40, 40))
    some = SimulationSettings(seed=5, shape=(16, 40, 40), structures=("actin", "dna"))
    full, part = simulate_cell(2, every)[0], simulate_cell(2, some)[0]
    np.testing.assert_array_equal(part[0], full[0])
    np.testing.assert_array_equal(part[1], full[1 + every.structures.index("actin")])
    assert not np.array_equal(simulate_cell(3, every)[0][0], full[0])
    assert not np.array_equal(
        simulate_cell(2, SimulationSettings(seed=6, shape=(16, 40, 40)))[0][0], full[0]
    )


def test_true_masks_are_saved_beside_each_image_for_the_blob_structures(
    small_simulation: Path,  # noqa: F811
) -> None:
    image = small_simulation.parent / "images" / "cell_0000.ome.tif"
    masks = BioImage(masks_path(image))
    assert list(masks.channel_names) == ["dna"]
    labels = masks.get_image_data("ZYX", C=0)
    dna = BioImage(image).get_image_data("ZYX", C=1).astype(float)
    assert labels.dtype == np.uint16 and labels.max() >= 1
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))
    assert dna[labels > 0].mean() > 3 * dna[labels == 0].mean()


def _within_slice(volume: np.ndarray) -> np.ndarray:
    """Centre each z slice: the fit must explain where structures are *in* a slice, not the
    depth at which cells sit, which is alike in every field and would pass a shuffled control."""
    return volume - volume.mean(axis=(1, 2), keepdims=True)


def _features(tl: np.ndarray) -> np.ndarray:
    tl = (tl - tl.mean()) / tl.std()
    maps = [tl]
    for sigma in (1, 2, 4, 8):
        maps += [
            gaussian_filter(tl, sigma),
            gaussian_filter(tl * tl, sigma),
            gaussian_gradient_magnitude(tl, sigma),
        ]
    return np.stack([_within_slice(m).ravel() for m in maps], axis=1)


def _ridge_r2(train_x, train_y, test_x, test_y, alpha: float = 1.0) -> float:
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    design = np.c_[(train_x - mean) / std, np.ones(len(train_x))]
    weights = np.linalg.solve(
        design.T @ design + alpha * np.eye(design.shape[1]), design.T @ train_y
    )
    prediction = np.c_[(test_x - mean) / std, np.ones(len(test_x))] @ weights
    return 1.0 - float(((test_y - prediction) ** 2).sum() / ((test_y - test_y.mean()) ** 2).sum())


def test_tl_predicts_dna_on_held_out_fields_and_shuffled_tl_does_not() -> None:
    settings = SimulationSettings(seed=11, shape=(48, 96, 96), structures=("dna",))
    fields = [simulate_cell(i, settings)[0].astype(np.float32) for i in range(6)]
    x = [_features(f[0]) for f in fields]
    y = [_within_slice((f[1] - f[1].mean()) / f[1].std()).ravel() for f in fields]
    test_x, test_y = np.concatenate(x[4:]), np.concatenate(y[4:])
    real = _ridge_r2(np.concatenate(x[:4]), np.concatenate(y[:4]), test_x, test_y)
    shuffled_x = np.concatenate([x[i] for i in (1, 2, 3, 0)])  # TL of another field
    shuffled = _ridge_r2(shuffled_x, np.concatenate(y[:4]), test_x, test_y)
    print(
        f"held-out R^2 of DNA from TL: {real:.3f}; with TL shuffled across fields: {shuffled:.3f}"
    )
    assert real > 0.2
    assert shuffled < 0.1
