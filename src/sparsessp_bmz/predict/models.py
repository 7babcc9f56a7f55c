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

from sparsessp_bmz.bmz.weights import WeightsFile, verified_weights
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.predict import runner_for
from sparsessp_bmz.predict.device import resolve_device
from sparsessp_bmz.predict.runners import (
    Engine,
    WindowFn,
    check_engine_device,
    onnx_runner,
    traced_runner,
)
from sparsessp_bmz.trained import TrainedModel

#: Engines that run a package's own weights; each is named after its rdf.yaml weight format.
PACKAGE_FORMATS = ("torchscript", "onnx")


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
    weights: dict[str, WeightsFile] | None = None  # weight format -> file in the package
    variant: str = "standard"

    @property
    def is_package(self) -> bool:
        return self.package_files is not None

    def default_engine(self, checkpoint_default: Engine) -> Engine:
        """A package runs its own TorchScript unless told otherwise; a checkpoint the default
        engine of `predict.defaults`."""
        return "torchscript" if self.is_package else checkpoint_default

    def check_engine(self, engine: Engine, device: str) -> None:
        """Refuse, before any input is read, an engine this model cannot run on `device`: weights
        the package lacks or whose sha256 differs from its rdf.yaml, an eager engine on a variant
        package (the eager network is the inner one, without the package's display scaling), or
        ONNX on a CUDA device ONNX Runtime cannot use."""
        check_engine_device(engine, resolve_device(device))
        if not self.is_package:
            return
        if engine in PACKAGE_FORMATS:
            self._weights_bytes(engine)
        elif self.variant != "standard":
            raise UserInputError(
                f"--engine {engine} runs the inner network of the {self.variant} package "
                f"{self.source}, without the package's own output scaling; use --engine "
                f"torchscript or onnx (its own weights), or predict from the checkpoint"
            )

    def _weights_bytes(self, fmt: str) -> bytes:
        """The package's `fmt` weight file, checked against its recorded sha256."""
        assert self.package_files is not None and self.weights is not None
        if fmt not in self.weights:
            raise UserInputError(
                f"package {self.source} ships no {fmt} weights (it has "
                f"{', '.join(sorted(self.weights))}); choose one of those with --engine"
            )
        return verified_weights(self.source, self.package_files, self.weights[fmt])

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
        self, input_window: tuple[int, int, int], batch_size: int, device: torch.device, fmt: str
    ) -> WindowFn:
        data = self._weights_bytes(fmt)
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

    rdf, read, _ = open_package(path)
    weights = {
        fmt: WeightsFile(str(entry["source"]), entry.get("sha256"))
        for fmt, entry in (rdf.get("weights") or {}).items()
        if isinstance(entry, dict) and entry.get("source")
    }
    trained = load_package(path)  # checks its state dict's sha256; refuses a foreign package
    variant = str(rdf["config"]["sparsessp"].get("variant", "standard"))
    return PredictionModel(trained, path, read, weights, variant)
