"""Files the data tests read: tiny simulated data sets, CZI and OME-TIFF stacks, manifests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparsessp_bmz.data.config import SimulationSettings
from sparsessp_bmz.data.simulate.writer import simulate, write_ome_tiff

SMALL_FIELD = (24, 48, 48)


def write_czi(path: Path, data_czyx: np.ndarray, voxel_um: tuple[float, float, float]) -> None:
    """A real CZI; CZI metadata stores distances in metres, hence the 1e-6."""
    from pylibCZIrw import czi

    with czi.create_czi(str(path), exist_ok=True) as writer:
        for c, stack in enumerate(data_czyx):
            for z, plane in enumerate(stack):
                writer.write(plane, plane={"C": c, "Z": z, "T": 0})
        writer.write_metadata(
            scale_x=voxel_um[2] * 1e-6, scale_y=voxel_um[1] * 1e-6, scale_z=voxel_um[0] * 1e-6
        )


def write_csv(path: Path, header: str, *rows: str) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def random_stack(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(100, 4000, shape).astype(np.uint16)


def ome_tiff(path: Path, data_czyx: np.ndarray, voxel=(0.29, 0.29, 0.29)) -> Path:
    write_ome_tiff(path, data_czyx, voxel, [f"c{i}" for i in range(len(data_czyx))])
    return path


@pytest.fixture(scope="session")
def small_simulation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small fields with two structures: the manifest path."""
    settings = SimulationSettings(
        cells=4, structures=("dna", "mitochondria"), seed=3, shape=SMALL_FIELD
    )
    return simulate(settings, tmp_path_factory.mktemp("simulated"))
