"""Slab-bounded Gaussian blending: the field is predicted one row of windows (a slab along y) at
a time, and output rows no later window touches are normalised and handed on at once.

Windows of one y start cover rows [s, s + dy); the next row of windows starts at s' > s, so once a
row of windows is done every output row below s' is final. The sum and weight accumulators
therefore only span one window height (dy rows of the whole padded z and x extent) and are
shifted up as slabs are finished: memory is bounded by a slab, not by the field, and the input is
asked for one band of rows at a time. The weight needs no array at all: windows sit on a product
grid of per-axis starts and the Gaussian is separable, so the summed weight is the product of three
1D coverages (`windows.axis_coverage`). The weighted sums are those of a whole-array blend, so the
result is the same up to float rounding (the order of operations differs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sparsessp_bmz.predict.runners import WindowFn
from sparsessp_bmz.predict.windows import (
    WindowPlan,
    axis_coverage,
    gaussian_weight,
    zscore_window,
)


class SparseRows(Protocol):
    """A normalised sparse (z, y, x) stack that hands out bands of rows on demand."""

    @property
    def shape(self) -> tuple[int, int, int]: ...

    def rows(self, start: int, stop: int) -> np.ndarray:
        """float32 (z, stop - start, x) of rows [start, stop) (0 <= start < stop <= shape[1])."""
        ...


@dataclass(frozen=True)
class ArrayRows:
    """An in-memory stack as `SparseRows`."""

    volume: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.volume.shape  # type: ignore[return-value]

    def rows(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.volume[:, start:stop], dtype=np.float32)


@dataclass(frozen=True)
class Slab:
    """Finished output rows [y0, y0 + rows) of the field: (r * D, rows, W) float32.

    `data` is a view into the blending state, valid until the next slab is asked for: write or
    copy it before (a copy per slab would double the memory of the blend)."""

    y0: int
    data: np.ndarray


#: Peak memory of the network's activations per output voxel of a batch, at width 1: the rise
#: of peak RSS over one eager forward pass of the 3to2d network on CPU was 460 B (256x256
#: window) to 570 B (128x128); 343 to 428 B at width 0.5. Rounded up; scaled with widths above 1.
ACTIVATION_BYTES_PER_VOXEL = 600


def prediction_bytes(
    plan: WindowPlan,
    ratio: int,
    batch_size: int,
    *,
    width: float,
    input_in_memory: bool,
    output_in_memory: bool,
) -> int:
    """Peak bytes of predicting one field with `plan`: the whole sparse input when it is in
    memory, the slab blending state (the input band, its padded copy, the sum accumulator, one
    batch in and out), the network's activations on one batch, and the whole output when it is
    assembled in memory (all float32; finished slabs are views)."""
    dz, dy, dx = plan.input_window
    pz, py, px = plan.padded_shape
    band = pz * dy * px
    window = dz * dy * dx
    slabs = 2 * band + ratio * band + batch_size * (1 + ratio) * window
    activations = ACTIVATION_BYTES_PER_VOXEL * max(1.0, width) * batch_size * ratio * window
    field = pz * py * px  # the padded field bounds the unpadded one
    whole = int(input_in_memory) * field + int(output_in_memory) * ratio * field
    return 4 * (slabs + whole) + int(activations)


def _padded_band(source: SparseRows, plan: WindowPlan, y: int) -> np.ndarray:
    """Input rows [y, y + dy) of the padded field (reflect padding, as np.pad on the whole
    volume gives: padding is separable per axis)."""
    depth, height, width = source.shape
    pz, py, px = plan.padded_shape
    dy = plan.input_window[1]
    if py > height:  # the field is lower than one window: one band, padded in y too
        band = source.rows(0, height)
        pads = [(0, pz - depth), (0, py - height), (0, px - width)]
    else:
        band = source.rows(y, y + dy)
        pads = [(0, pz - depth), (0, 0), (0, px - width)]
    if any(after for _, after in pads):
        band = np.pad(band, pads, mode="reflect")
    return band


def predict_slabs(
    run: WindowFn,
    source: SparseRows,
    plan: WindowPlan,
    ratio: int,
    *,
    batch_size: int = 1,
    normalise_windows: bool = False,
    advance: Callable[[int], None] = lambda n: None,
) -> Iterator[Slab]:
    """Blend the windows of `plan` over `source` and yield the finished output slabs top to
    bottom, cropped to the field (r * depth, rows, width). `advance(n)` is told of every n
    windows done."""
    depth, height, width = source.shape
    dz, dy, dx = plan.input_window
    out_window = (ratio * dz, dy, dx)
    weight = gaussian_weight(out_window)
    out_depth = ratio * plan.padded_shape[0]
    total = np.zeros((out_depth, dy, plan.padded_shape[2]), dtype=np.float32)
    pz, py, px = plan.padded_shape
    cover_z = axis_coverage(plan.starts[0], dz, pz, ratio)[: ratio * depth, None, None]
    cover_y = axis_coverage(plan.starts[1], dy, py)[:, None]
    cover_x = axis_coverage(plan.starts[2], dx, px)[:width]
    batch = np.empty((batch_size, 1, dz, dy, dx), dtype=np.float32)
    top = 0  # padded row of total[:, 0]

    def finished(stop: int) -> Slab | None:
        """Rows [top, stop) normalised in place and cropped to the field (None when all
        padding): those rows are never added to again."""
        rows = min(stop, height) - top
        if rows <= 0:
            return None
        block = total[: ratio * depth, :rows, :width]
        block /= cover_z  # one axis at a time: in place, no temporary of the slab's size
        block /= cover_y[top : top + rows]
        block /= cover_x
        return Slab(top, block)

    def shift(rows: int) -> None:
        """Move the accumulator up by `rows` and clear the rows freed at the bottom. Copied in
        blocks of at most `rows` rows, so no block overlaps its destination and numpy needs no
        temporary copy of the state."""
        for start in range(0, dy - rows, rows):
            stop = min(start + rows, dy - rows)
            total[:, start:stop] = total[:, start + rows : stop + rows]
        total[:, dy - rows :] = 0

    def flush(origins: list[tuple[int, int]]) -> None:
        n = len(origins)
        out = run(batch[:n])
        if out.shape != (n, 1, *out_window):
            raise RuntimeError(
                f"network returned {out.shape} for input {(n, 1, dz, dy, dx)}; "
                f"expected {(n, 1, *out_window)}"
            )
        for (z, x), window_out in zip(origins, out[:, 0], strict=True):
            region = np.s_[ratio * z : ratio * z + out_window[0], :, x : x + dx]
            total[region] += window_out * weight
        advance(n)

    for y in plan.starts[1]:
        if y > top:
            slab = finished(y)
            if slab is not None:
                yield slab
            shift(y - top)
            top = y
        band = _padded_band(source, plan, y)
        pending: list[tuple[int, int]] = []
        for z in plan.starts[0]:
            for x in plan.starts[2]:
                tile = band[z : z + dz, :, x : x + dx]
                batch[len(pending), 0] = zscore_window(tile) if normalise_windows else tile
                pending.append((z, x))
                if len(pending) == batch_size:
                    flush(pending)
                    pending = []
        if pending:
            flush(pending)
    slab = finished(top + dy)
    if slab is not None:
        yield slab
