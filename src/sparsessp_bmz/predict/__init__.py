"""Whole-volume prediction with a Gaussian-weighted sliding window on the sparse grid.

Networks are trained on patches, and the folding topologies accept only the patch depth, so a whole
field of view is predicted window by window and the windows are blended (`windows`). The blend is
slab-bounded (`slabs`): rows of windows are predicted top to bottom and finished output rows are
handed on, so streaming writers (`writers`) never hold the field. The network runs through one of
several engines (`runners`): eager, frozen TorchScript, ONNX Runtime, bfloat16.

Normalisation: networks are trained on volumes z-scored as a whole, and `predict_volume` expects
its input normalised that way. Software that tiles an image and runs bioimage.io preprocessing
per tile (QuPath applies `zero_mean_unit_variance` to every tile it feeds the model) z-scores
each window on its own instead; `normalise_windows=True` reproduces that, so evaluation can show
what it costs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from sparsessp_bmz import guards
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.predict.device import net_device, resolve_device
from sparsessp_bmz.predict.progress import progress_bar
from sparsessp_bmz.predict.runners import ENGINES, Engine, WindowFn, compile_runner
from sparsessp_bmz.predict.slabs import (
    ArrayRows,
    Slab,
    SparseRows,
    XBand,
    place,
    predict_slabs,
    prediction_bytes,
    window_runs,
    x_bands,
)
from sparsessp_bmz.predict.windows import (
    SIGMA_FRACTION,
    ZMUV_EPS,
    Overlap,
    WindowPlan,
    gaussian_weight,
    plan_windows,
    resolve_window,
    zscore_window,
)
from sparsessp_bmz.spec import ModelSpec

__all__ = [
    "ENGINES",
    "SIGMA_FRACTION",
    "ZMUV_EPS",
    "ArrayRows",
    "Engine",
    "Overlap",
    "Slab",
    "SparseRows",
    "WindowFn",
    "WindowPlan",
    "XBand",
    "gaussian_weight",
    "place",
    "plan_windows",
    "predict_array",
    "predict_slabs",
    "predict_volume",
    "prediction_bytes",
    "progress_bar",
    "resolve_device",
    "resolve_window",
    "runner_for",
    "window_runs",
    "x_bands",
    "zscore_window",
]


@contextlib.contextmanager
def runner_for(
    net: nn.Module,
    input_window: tuple[int, int, int],
    *,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    engine: Engine = "eager",
) -> Iterator[WindowFn]:
    """`net` in eval mode (its mode restored afterwards) behind the runner of `engine`.

    `device` None means wherever the network's parameters are; otherwise it is moved there.
    """
    chosen = None if device is None else resolve_device(device)
    if chosen is not None:
        net.to(chosen)
    was_training = net.training
    net.eval()
    try:
        yield compile_runner(net, engine, net_device(net), (batch_size, 1, *input_window))
    finally:
        net.train(was_training)


def predict_volume(
    net: nn.Module,
    spec: ModelSpec,
    sparse_zyx: np.ndarray,
    *,
    overlap: Overlap = 0.5,
    batch_size: int = 4,
    window: tuple[int, int, int] | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    normalise_windows: bool = False,
    engine: Engine = "eager",
) -> np.ndarray:
    """Predict the dense (r * D_sparse, H, W) float32 volume from a sparse (D_sparse, H, W) stack.

    `sparse_zyx` must already be normalised the way the network was trained (z-scored). `window`
    is in target voxels and defaults to `spec.patch`; fixed-depth topologies accept only the patch
    depth. Volumes smaller than a window are reflect-padded and cropped back. `device` None means
    wherever the network's parameters are; otherwise the network is moved there.
    `normalise_windows` z-scores each window's input on its own (see `zscore_window`), as a
    consumer that normalises per tile does, instead of using the volume's normalisation as is.
    `engine` picks how the network runs (`runners`); the default stays eager because tracing
    costs seconds that short calls (evaluation of small volumes) do not win back.
    """
    volume = np.asarray(sparse_zyx, dtype=np.float32)
    if volume.ndim != 3 or min(volume.shape) < 1:
        raise UserInputError(
            f"expected a non-empty 3D sparse stack (z, y, x), got shape {volume.shape}"
        )
    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    input_window = resolve_window(spec, window)
    plan = plan_windows(volume.shape, input_window, overlap)  # type: ignore[arg-type]
    guards.check_memory(
        prediction_bytes(
            plan,
            spec.ratio,
            batch_size,
            width=spec.width,
            input_in_memory=True,
            output_in_memory=True,
        ),
        f"predicting a {'x'.join(map(str, volume.shape))} sparse stack",
        "crop the input into smaller fields or lower the batch size",
    )
    with (
        runner_for(net, input_window, batch_size=batch_size, device=device, engine=engine) as run,
        progress_bar(progress, window_runs(plan), "sliding window") as advance,
    ):
        return predict_array(
            run,
            volume,
            plan,
            spec.ratio,
            batch_size=batch_size,
            normalise_windows=normalise_windows,
            advance=advance,
        )


def predict_array(
    run: WindowFn,
    volume: np.ndarray,
    plan: WindowPlan,
    ratio: int,
    *,
    batch_size: int = 1,
    normalise_windows: bool = False,
    advance: Callable[[int], None] = lambda n: None,
) -> np.ndarray:
    """The dense prediction of an in-memory sparse `volume` with a runner compiled once (see
    `runner_for`), e.g. for many volumes of one shape."""
    result = np.empty((ratio * volume.shape[0], *volume.shape[1:]), dtype=np.float32)
    for slab in predict_slabs(
        run,
        ArrayRows(volume),
        plan,
        ratio,
        batch_size=batch_size,
        normalise_windows=normalise_windows,
        advance=advance,
    ):
        place(result, slab)
    return result
