"""Tiny trained models and their exported packages, shared by the bmz tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from sparsessp_bmz.nets import build_net
from sparsessp_bmz.spec import ModelSpec
from sparsessp_bmz.trained import TrainedModel, TrainingFacts

SPECS = {
    "3to2d": ModelSpec(
        organelle="dna", ratio=2, topology="3to2d", width=0.125, units=16, patch=(8, 32, 32)
    ),
    "3d": ModelSpec(
        organelle="mitochondria", ratio=2, topology="3d", width=0.125, units=16, patch=(8, 32, 32)
    ),
    # one TL plane -> one fluorescence plane (the QuPath variant)
    "plane": ModelSpec(
        organelle="dna", ratio=1, topology="2d", width=0.125, units=16, patch=(1, 32, 32)
    ),
}


def tiny_trained(topology: str) -> TrainedModel:
    """A seeded network with non-trivial BatchNorm statistics (as after training)."""
    spec = SPECS[topology]
    torch.manual_seed(0)
    net = build_net(spec)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
    net.eval()
    return TrainedModel(spec=spec, net=net, facts=TrainingFacts(epoch=3, best_val_mse=0.5))


def synthetic_volume(
    depth: int = 16, size: int = 48, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(dense TL, fluorescence) of a smooth random field: structure, not white noise."""
    rng = np.random.default_rng(seed)
    tl = gaussian_filter(rng.normal(size=(depth, size, size)), 2.0).astype(np.float32)
    target = gaussian_filter(np.maximum(tl, 0) ** 2, 1.0).astype(np.float32)
    return tl, target


def export_tiny(topology: str, out: Path, variant: str = "standard") -> Path:
    from sparsessp_bmz.bmz.package import export_trained

    trained = tiny_trained(topology)
    tl, target = synthetic_volume()
    return export_trained(
        trained,
        out,
        variant=variant,  # type: ignore[arg-type]
        test_input=tl[:: trained.spec.ratio],
        test_target=target,
    )


#: One export per topology and variant per test session, shared by every test module that
#: imports the fixtures below (each module registers its own fixture, this cache makes them one).
_EXPORTED: dict[tuple[str, str], Path] = {}


def _exported(topology: str, factory: pytest.TempPathFactory, variant: str = "standard") -> Path:
    key = (topology, variant)
    if key not in _EXPORTED:
        out = factory.mktemp(f"packages-{topology}-{variant}")
        _EXPORTED[key] = export_tiny(topology, out, variant)
    return _EXPORTED[key]


@pytest.fixture(scope="session")
def exported_3to2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Zip of the exported fixed-depth (3to2d) package, inside its packages/ folder."""
    return _exported("3to2d", tmp_path_factory)


@pytest.fixture(scope="session")
def exported_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Zip of the exported variable-depth (3d) package."""
    return _exported("3d", tmp_path_factory)


@pytest.fixture(scope="session")
def exported_dense_3to2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Zip of the dense-grid (ilastik) package of the 3to2d model."""
    return _exported("3to2d", tmp_path_factory, "dense")


@pytest.fixture(scope="session")
def exported_plane(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Zip of the plane (QuPath) package of a single-plane 2d model."""
    return _exported("plane", tmp_path_factory, "plane")
