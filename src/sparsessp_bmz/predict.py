"""Whole-volume prediction with a Gaussian-weighted sliding window on the sparse grid.

Networks are trained on patches, and the folding topologies accept only the patch depth, so a whole
field of view is predicted window by window. Window borders see less context than window centres,
so overlapping windows are blended with a Gaussian weight (sigma = window / 8, as RepMode and the
paper do) to hide seams. Windows are placed in *sparse* z coordinates: each window's input is a
contiguous block of acquired TL slices and its output covers exactly r times as many dense slices
starting at r times the first one, so a window never straddles the sparse grid.

Memory stays bounded by the output: one float32 sum and one float32 weight array of the output
size, plus one batch of windows; windows are generated, never listed.

Normalisation: networks are trained on volumes z-scored as a whole, and `predict_volume` expects
its input normalised that way. Software that tiles an image and runs bioimage.io preprocessing
per tile (QuPath applies `zero_mean_unit_variance` to every tile it feeds the model) z-scores
each window on its own instead; `normalise_windows=True` reproduces that, so evaluation can show
what it costs.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sparsessp_bmz import guards
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.spec import ModelSpec

#: Gaussian sigma as a fraction of the window size, per axis.
SIGMA_FRACTION = 1 / 8
#: eps of bioimage.io's `zero_mean_unit_variance`, (x - mean) / (std + eps): the default, which
#: the packages keep.
ZMUV_EPS = 1e-6


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of one volume go, in sparse input voxels.

    `padded_shape` is the input after reflect padding (only where the volume is smaller than a
    window); `starts` are the window origins per axis; the last window of each axis is flush with
    the padded end.
    """

    input_window: tuple[int, int, int]
    padded_shape: tuple[int, int, int]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    @property
    def count(self) -> int:
        """Number of windows (network forward passes of batch size one)."""
        return len(self.starts[0]) * len(self.starts[1]) * len(self.starts[2])

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return itertools.product(*self.starts)  # type: ignore[return-value]


def _axis_starts(size: int, window: int, overlap: float) -> tuple[int, ...]:
    step = max(1, round(window * (1 - overlap)))
    last = size - window
    starts = list(range(0, last, step))
    starts.append(last)
    return tuple(starts)


def plan_windows(
    sparse_shape: tuple[int, int, int], input_window: tuple[int, int, int], overlap: float
) -> WindowPlan:
    """Tile a sparse volume with windows overlapping by about `overlap` of their size per axis."""
    if not 0 <= overlap < 1:
        raise UserInputError(f"overlap must be in [0, 1), got {overlap}")
    padded = tuple(max(s, w) for s, w in zip(sparse_shape, input_window, strict=True))
    starts = tuple(_axis_starts(s, w, overlap) for s, w in zip(padded, input_window, strict=True))
    return WindowPlan(tuple(input_window), padded, starts)  # type: ignore[arg-type]


def gaussian_weight(window_zyx: tuple[int, int, int]) -> np.ndarray:
    """Separable Gaussian over a window (peak 1, sigma = size / 8 per axis), float32.

    The smallest weight, at a corner, is exp(-24) ~ 4e-11: tiny but positive, so voxels that only
    one window covers (volume edges) are still normalised exactly.
    """
    weight = np.ones((1, 1, 1), dtype=np.float64)
    for axis, size in enumerate(window_zyx):
        coords = np.arange(size, dtype=np.float64) - (size - 1) / 2
        profile = np.exp(-0.5 * (coords / (size * SIGMA_FRACTION)) ** 2)
        shape = [1, 1, 1]
        shape[axis] = size
        weight = weight * profile.reshape(shape)
    return (weight / weight.max()).astype(np.float32)


def resolve_window(spec: ModelSpec, window: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """The sparse input window for a target-voxel window (default: the training patch)."""
    target = spec.patch if window is None else tuple(window)
    if len(target) != 3 or target[0] % spec.ratio:
        raise UserInputError(
            f"window {target} must be three sizes (D, H, W) in target voxels with D a multiple of "
            f"the sparsity ratio r={spec.ratio}"
        )
    input_window = (target[0] // spec.ratio, target[1], target[2])
    try:
        spec.check_input_shape(*input_window)
    except ValueError as err:
        raise UserInputError(
            f"window {target} does not fit model {spec.model_id}: {err}; leave the window at the "
            f"training patch {spec.patch}"
        ) from err
    return input_window


def zscore_window(window: np.ndarray, eps: float = ZMUV_EPS) -> np.ndarray:
    """`window` z-scored on its own statistics, as bioimage.io's per-sample
    `zero_mean_unit_variance` does: (x - mean) / (std + eps), float32 (statistics in float64).

    A z-score of a z-score is the z-score (up to eps), so applying this to a window of a volume
    that was already z-scored as a whole gives what a consumer computes from the raw tile.
    """
    mean = float(window.mean(dtype=np.float64))
    std = float(window.std(dtype=np.float64))
    return ((window - mean) / (std + eps)).astype(np.float32)


def resolve_device(device: str | torch.device) -> torch.device:
    """`device` as a torch device that exists on this machine, or one clear error (before any
    work: torch itself fails only when the network is moved, with a traceback)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as err:
        raise UserInputError(
            f"device {str(device)!r} is not a torch device; use cpu, cuda, cuda:N or mps"
        ) from err
    if parsed.type == "cpu":
        return parsed
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(
                f"device {str(device)!r}: CUDA is not available here (torch {torch.__version__}, "
                "no usable NVIDIA GPU or a CPU-only build); use --device cpu"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise UserInputError(
                f"device {str(device)!r}: this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1}); pick one of them or use --device cpu"
            )
        return parsed
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserInputError(
                f"device {str(device)!r}: Apple MPS is not available here; use --device cpu"
            )
        return parsed
    raise UserInputError(
        f"device {str(device)!r} is not supported for prediction; use cpu, cuda, cuda:N or mps"
    )


def _net_device(net: nn.Module) -> torch.device:
    for parameter in net.parameters():
        return parameter.device
    return torch.device("cpu")


def predict_volume(
    net: nn.Module,
    spec: ModelSpec,
    sparse_zyx: np.ndarray,
    *,
    overlap: float = 0.5,
    batch_size: int = 4,
    window: tuple[int, int, int] | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    normalise_windows: bool = False,
) -> np.ndarray:
    """Predict the dense (r * D_sparse, H, W) float32 volume from a sparse (D_sparse, H, W) stack.

    `sparse_zyx` must already be normalised the way the network was trained (z-scored). `window`
    is in target voxels and defaults to `spec.patch`; fixed-depth topologies accept only the patch
    depth. Volumes smaller than a window are reflect-padded and cropped back. `device` None means
    wherever the network's parameters are; otherwise the network is moved there.
    `normalise_windows` z-scores each window's input on its own (see `zscore_window`), as a
    consumer that normalises per tile does, instead of using the volume's normalisation as is.
    """
    volume = np.asarray(sparse_zyx, dtype=np.float32)
    if volume.ndim != 3 or min(volume.shape) < 1:
        raise UserInputError(
            f"expected a non-empty 3D sparse stack (z, y, x), got shape {volume.shape}"
        )
    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    depth, height, width = volume.shape
    input_window = resolve_window(spec, window)
    plan = plan_windows(volume.shape, input_window, overlap)  # type: ignore[arg-type]
    guards.check_prediction(volume.shape, input_window, spec.ratio)
    chosen_device = None if device is None else resolve_device(device)
    pads = [(0, p - s) for p, s in zip(plan.padded_shape, volume.shape, strict=True)]
    if any(after for _, after in pads):
        volume = np.pad(volume, pads, mode="reflect")

    r = spec.ratio
    out_window = (r * input_window[0], input_window[1], input_window[2])
    weight = gaussian_weight(out_window)
    padded_out = (r * plan.padded_shape[0], *plan.padded_shape[1:])
    total = np.zeros(padded_out, dtype=np.float32)
    norm = np.zeros(padded_out, dtype=np.float32)

    if chosen_device is not None:
        net.to(chosen_device)
    target_device = _net_device(net)
    was_training = net.training
    net.eval()
    batch = np.empty((batch_size, 1, *input_window), dtype=np.float32)
    dz, dy, dx = input_window

    def flush(origins: list[tuple[int, int, int]]) -> None:
        n = len(origins)
        with torch.inference_mode():
            out = net(torch.from_numpy(batch[:n]).to(target_device)).float().cpu().numpy()
        if out.shape != (n, 1, *out_window):
            raise RuntimeError(
                f"network returned {out.shape} for input {(n, 1, *input_window)}; "
                f"expected {(n, 1, *out_window)}"
            )
        for (z, y, x), window_out in zip(origins, out[:, 0], strict=True):
            region = np.s_[r * z : r * z + out_window[0], y : y + dy, x : x + dx]
            total[region] += window_out * weight
            norm[region] += weight

    n_batches = -(-plan.count // batch_size)
    with progress_bar(progress, n_batches, "sliding window") as advance:
        try:
            pending: list[tuple[int, int, int]] = []
            for z, y, x in plan:
                tile = volume[z : z + dz, y : y + dy, x : x + dx]
                batch[len(pending), 0] = zscore_window(tile) if normalise_windows else tile
                pending.append((z, y, x))
                if len(pending) == batch_size:
                    flush(pending)
                    pending = []
                    advance()
            if pending:
                flush(pending)
                advance()
        finally:
            net.train(was_training)

    result = total[: r * depth, :height, :width]
    result /= norm[: r * depth, :height, :width]
    return np.ascontiguousarray(result)


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[], None]]:
    """Yield an `advance()` callback of a transient rich progress bar (a no-op when disabled)."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
