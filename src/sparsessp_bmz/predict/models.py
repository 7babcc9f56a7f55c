"""What `sparsessp-bmz predict` runs: a training checkpoint, or a SparseSSP bioimage.io package
with its own weights.

A package is predicted the way bioimage.io describes it: its TorchScript (default) or ONNX weights,
its preprocessing (`zero_mean_unit_variance` per sample over (channel, z, y, x): the whole-volume
z-score that `imageio` applies to every input; the package's eps of 1e-6 on a unit std changes
values by 1e-6 relative, below its reproducibility tolerance), on the sparse grid with the same
blended windows as a checkpoint. The spec, grid and variant come from `config.sparsessp`
(`bmz.export.load_package`, which also refuses a package this project did not write). Variants
that take another input form are fed from the sparse windows: the dense-grid network gets the
sparse slices at z = 0, r, 2r, ... of a target-grid window (the only ones it reads), the plane
network gets 2D planes.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.predict import runner_for
from sparsessp_bmz.predict.device import resolve_device
from sparsessp_bmz.predict.runners import Engine, WindowFn, onnx_runner, traced_runner
from sparsessp_bmz.trained import TrainedModel

#: rdf.yaml weight format of each engine that runs a package's own weights.
PACKAGE_FORMATS: dict[str, str] = {"torchscript": "torchscript", "onnx": "onnx"}


def is_package(path: Path) -> bool:
    """Whether `path` names a bioimage.io package (folder, rdf.yaml/bioimageio.yaml, or a zip
    with one at its root; a torch checkpoint is a zip too, with its members in one folder)."""
    path = Path(path)
    if path.is_dir() or path.name.lower().endswith((".yaml", ".yml")):
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name in ("rdf.yaml", "bioimageio.yaml") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _dense_grid(run: WindowFn, ratio: int) -> WindowFn:
    """Feed a dense-grid network from sparse windows: sparse slice k at target slice k * r."""

    def run_sparse(batch: np.ndarray) -> np.ndarray:
        n, c, d, h, w = batch.shape
        dense = np.zeros((n, c, ratio * d, h, w), dtype=np.float32)
        dense[:, :, ::ratio] = batch
        return run(dense)

    return run_sparse


def _plane(run: WindowFn) -> WindowFn:
    """Feed a plane network (B, 1, H, W) from one-slice windows (B, 1, 1, H, W)."""
    return lambda batch: run(batch[:, :, 0])[:, :, None]


@dataclass(frozen=True)
class PredictionModel:
    """A model `predict` can run: the trained network (spec, grid, state) and, for a package,
    the package's own weight files and variant."""

    trained: TrainedModel
    source: Path
    package_files: Callable[[str], bytes] | None = None
    weights: dict[str, str] | None = None  # weight format -> file in the package
    variant: str = "standard"

    @property
    def is_package(self) -> bool:
        return self.package_files is not None

    def default_engine(self, checkpoint_default: Engine) -> Engine:
        """A package runs its own TorchScript unless told otherwise; a checkpoint the fastest
        exact engine."""
        return "torchscript" if self.is_package else checkpoint_default

    @contextlib.contextmanager
    def runner(
        self,
        input_window: tuple[int, int, int],
        *,
        batch_size: int,
        device: str,
        engine: Engine,
    ) -> Iterator[WindowFn]:
        """The compiled network for windows of `input_window` (sparse voxels)."""
        if not self.is_package or engine not in PACKAGE_FORMATS:
            with runner_for(
                self.trained.net, input_window, batch_size=batch_size, device=device, engine=engine
            ) as run:
                yield run
            return
        yield self._package_runner(input_window, batch_size, resolve_device(device), engine)

    def _package_runner(
        self, input_window: tuple[int, int, int], batch_size: int, device: torch.device, engine: str
    ) -> WindowFn:
        assert self.package_files is not None and self.weights is not None
        fmt = PACKAGE_FORMATS[engine]
        if fmt not in self.weights:
            raise UserInputError(
                f"package {self.source} ships no {fmt} weights (it has "
                f"{', '.join(sorted(self.weights))}); choose one of those with --engine"
            )
        data = self.package_files(self.weights[fmt])
        ratio = self.trained.spec.ratio
        depth, height, width = input_window
        shape: tuple[int, ...] = {
            "standard": (batch_size, 1, depth, height, width),
            "dense": (batch_size, 1, ratio * depth, height, width),
            "plane": (batch_size, 1, height, width),
        }[self.variant]
        if fmt == "onnx":
            run = onnx_runner(data, shape, device)
        else:
            script = torch.jit.load(io.BytesIO(data), map_location=device)
            run = traced_runner(script, device, shape)
        if self.variant == "dense":
            return _dense_grid(run, ratio)
        if self.variant == "plane":
            return _plane(run)
        return run


def load_model(path: Path) -> PredictionModel:
    """The checkpoint or package at `path`, or one clear error (a foreign package included)."""
    path = Path(path)
    if not is_package(path):
        from sparsessp_bmz.training.checkpoint import load_trained

        return PredictionModel(load_trained(path), path)
    from sparsessp_bmz.bmz.export import load_package
    from sparsessp_bmz.bmz.validate import open_package

    trained = load_package(path)  # refuses a package that is not ours, with the reason
    rdf, read, _ = open_package(path)
    weights = {
        fmt: str(entry["source"])
        for fmt, entry in (rdf.get("weights") or {}).items()
        if isinstance(entry, dict) and entry.get("source")
    }
    variant = str(rdf["config"]["sparsessp"].get("variant", "standard"))
    return PredictionModel(trained, path, read, weights, variant)
