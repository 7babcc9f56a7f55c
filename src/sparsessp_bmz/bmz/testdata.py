"""Test tensors of a package: a crop of a held-out volume, never random noise.

The crop follows the model's contract: the sparse input is the TEST volume's dense TL subsampled
on the global grid (phase 0, ratio r), its depth is the training patch's sparse depth (the only
one a depth-folding topology accepts), y/x are multiples of 16, and the dense target covers
exactly the z range those sparse slices span. Each package variant takes its own view of the same
crop (`variant_input`): the sparse stack, the dense TL stack on the target grid, or one plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sparsessp_bmz.bmz.axes import XY_MIN
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.nets.variants import Variant
from sparsessp_bmz.spec import XY_MULTIPLE, ModelSpec
from sparsessp_bmz.trained import TrainedModel

#: bioimageio.core's zero_mean_unit_variance adds this to the std; so do we, to match it.
ZMUV_EPS = 1e-6


@dataclass(frozen=True)
class TestTensors:
    """Sparse input (d, h, w), dense target (r*d, h, w) or None, and where they came from.

    `dense` is the TL stack on the target grid (r*d, h, w) when the source had one; the dense-grid
    variant otherwise gets the sparse slices repeated r times, an input its contract accepts.
    """

    sparse: np.ndarray
    target: np.ndarray | None
    source: str
    dense: np.ndarray | None = None


def zero_mean_unit_variance(volume: np.ndarray) -> np.ndarray:
    """The package's preprocessing, computed as bioimageio.core computes it."""
    volume = volume.astype(np.float32)
    return ((volume - volume.mean()) / (volume.std() + ZMUV_EPS)).astype(np.float32)


def _xy_size(available: int, wanted: int, axis: str, where: str) -> int:
    size = min(wanted, available - available % XY_MULTIPLE)
    if size < XY_MIN:
        raise UserInputError(
            f"{where}: the test volume is {available} voxels along {axis}; a package needs at "
            f"least {XY_MIN} to cut test tensors; use a larger held-out volume"
        )
    return size


def _depth(spec: ModelSpec, available: int, where: str) -> int:
    wanted = spec.input_patch[0]
    if spec.fixed_depth:
        if available < wanted:
            raise UserInputError(
                f"{where}: the sparse test stack has {available} slices but topology "
                f"'{spec.topology}' needs exactly {wanted}; use a deeper held-out volume"
            )
        return wanted
    step = spec.input_depth_step
    depth = min(wanted, available - available % step)
    if depth < step:
        raise UserInputError(
            f"{where}: the sparse test stack has {available} slices, fewer than the {step} "
            f"the network needs"
        )
    return depth


def crop_tensors(
    spec: ModelSpec,
    sparse: np.ndarray,
    target: np.ndarray | None,
    source: str,
    dense: np.ndarray | None = None,
) -> TestTensors:
    """Centre crop of a sparse stack (and its dense target) to a size the network accepts."""
    if sparse.ndim != 3:
        raise UserInputError(
            f"{source}: the test input must be a (z, y, x) stack, got {sparse.shape}"
        )
    r = spec.ratio
    d_avail = sparse.shape[0]
    if target is not None:
        d_avail = min(d_avail, target.shape[0] // r)
    d = _depth(spec, d_avail, source)
    h = _xy_size(sparse.shape[1], spec.patch[1], "y", source)
    w = _xy_size(sparse.shape[2], spec.patch[2], "x", source)
    s0 = (d_avail - d) // 2
    y0 = (sparse.shape[1] - h) // 2
    x0 = (sparse.shape[2] - w) // 2
    crop = sparse[s0 : s0 + d, y0 : y0 + h, x0 : x0 + w]
    window = (slice(s0 * r, (s0 + d) * r), slice(y0, y0 + h), slice(x0, x0 + w))
    cropped_target = None if target is None else target[window].astype(np.float32)
    cropped_dense = None
    if dense is not None and dense.shape[0] >= (s0 + d) * r:
        cropped_dense = zero_mean_unit_variance(dense[window])
    return TestTensors(zero_mean_unit_variance(crop), cropped_target, source, cropped_dense)


def held_out_tensors(trained: TrainedModel) -> TestTensors:
    """First TEST volume of the model's structure, via the data layer."""
    from sparsessp_bmz.data.sparse import subsample
    from sparsessp_bmz.data.splits import rows_for
    from sparsessp_bmz.data.volumes import load_pair

    spec = trained.spec
    settings = trained.data_for((spec.organelle,))
    rows = rows_for(settings, "test")
    if not rows:
        raise UserInputError(
            f"{trained.manifest}: no test image of '{spec.organelle}' to cut test tensors from; "
            f"check the splits file {settings.splits_path}"
        )
    pair = load_pair(rows[0], settings)
    sparse = subsample(pair.signal, spec.ratio, 0)
    return crop_tensors(spec, sparse, pair.target, f"test volume {rows[0].name}", dense=pair.signal)


def variant_input(tensors: TestTensors, spec: ModelSpec, variant: Variant) -> np.ndarray:
    """The test input of one variant, without batch and channel axes."""
    if variant == "plane":
        return tensors.sparse[0]
    if variant == "dense":
        if tensors.dense is not None:
            return tensors.dense
        return np.repeat(tensors.sparse, spec.ratio, axis=0)
    return tensors.sparse


def predict(net: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Eval-mode output for one input without batch/channel axes, after the package's
    preprocessing (also without batch/channel axes)."""
    x = torch.from_numpy(zero_mean_unit_variance(image))[None, None]
    net.eval()
    with torch.no_grad():
        return net(x)[0, 0].numpy().astype(np.float32)
