"""Band- and slab-bounded Gaussian blending: the field is cut into bands of window columns along
x, and each band is predicted one row of windows (a slab along y) at a time; output rows no later
window of the band touches are normalised and handed on at once.

Windows of one y start cover rows [s, s + dy); the next row of windows starts at s' > s, so once a
row of windows is done every output row above s' is final. The sum accumulator therefore spans
one window height (dy rows of the whole padded z) and one band's columns, and is shifted up as
slabs are finished: memory is bounded by a band's slab, not by the field's y or x size, and the
input is asked for one band-wide block of rows at a time. A band finishes the output columns from
its first window start to the next band's first window start; the windows of the previous band
that reach into those columns are run again (a column of windows per band border, at most) rather
than keeping the full-height overlap region of the previous band, which would grow with y.

The weight needs no array at all: windows sit on a product grid of per-axis starts and the
Gaussian is separable, so the summed weight is the product of three 1D coverages
(`windows.axis_coverage`). The weighted sums are those of a whole-array blend, so the result is
the same up to float rounding (the order of operations differs).
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

#: Widest band of window columns (input x voxels from its first window start to its last window
#: end) unless one window is wider: bounds the blending state at r * D * dy * 4096 float32 (e.g.
#: 32 x 256 x 4096 x 4 B = 128 MiB) whatever the field's width.
BAND_WIDTH = 4096


class SparseRows(Protocol):
    """A normalised sparse (z, y, x) stack that hands out blocks of rows and columns on demand."""

    @property
    def shape(self) -> tuple[int, int, int]: ...

    def region(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """float32 (z, bottom - top, right - left) of rows [top, bottom) and columns
        [left, right) (inside `shape`)."""
        ...


@dataclass(frozen=True)
class ArrayRows:
    """An in-memory stack as `SparseRows`."""

    volume: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.volume.shape  # type: ignore[return-value]

    def region(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        return np.asarray(self.volume[:, top:bottom, left:right], dtype=np.float32)


@dataclass(frozen=True)
class Slab:
    """Finished output rows [y0, y0 + rows) and columns [x0, x0 + cols) of the field:
    (r * D, rows, cols) float32.

    `data` is a view into the blending state, valid until the next slab is asked for: write or
    copy it before (a copy per slab would double the memory of the blend)."""

    y0: int
    x0: int
    data: np.ndarray


@dataclass(frozen=True)
class XBand:
    """One band of window columns: it finishes padded output columns [x0, x1) and runs the
    windows starting at `starts` (every window touching those columns)."""

    x0: int
    x1: int
    starts: tuple[int, ...]
    window: int

    @property
    def left(self) -> int:
        """First padded column of the band's accumulator."""
        return self.starts[0]

    @property
    def width(self) -> int:
        """Columns of the band's accumulator."""
        return self.starts[-1] + self.window - self.starts[0]


def x_bands(plan: WindowPlan, band_width: int = BAND_WIDTH) -> tuple[XBand, ...]:
    """The window columns of `plan` grouped into bands at most `band_width` input voxels wide
    (one column at least), each with the earlier windows that reach into its columns."""
    starts, dx, padded = plan.starts[2], plan.input_window[2], plan.padded_shape[2]
    bands: list[XBand] = []
    first = 0
    while first < len(starts):
        x0 = starts[first]
        reach = next(j for j, s in enumerate(starts) if s + dx > x0)
        stop = first + 1
        while stop < len(starts) and starts[stop] + dx - starts[reach] <= band_width:
            stop += 1
        x1 = starts[stop] if stop < len(starts) else padded
        bands.append(XBand(x0, x1, starts[reach:stop], dx))
        first = stop
    return tuple(bands)


def window_runs(plan: WindowPlan, band_width: int = BAND_WIDTH) -> int:
    """Windows the network runs on for `plan`: its windows plus those run again at band
    borders (the total of a progress bar)."""
    per_column = len(plan.starts[0]) * len(plan.starts[1])
    return per_column * sum(len(band.starts) for band in x_bands(plan, band_width))


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
    band_width: int = BAND_WIDTH,
) -> int:
    """Peak bytes of predicting one field with `plan`: the whole sparse input when it is in
    memory, the blending state of the widest band (the input block, its padded copy, the sum
    accumulator, one batch in and out), the network's activations on one batch, and the whole
    output when it is assembled in memory (all float32; finished slabs are views)."""
    dz, dy, dx = plan.input_window
    pz, py, px = plan.padded_shape
    band = pz * dy * max(b.width for b in x_bands(plan, band_width))
    window = dz * dy * dx
    slabs = 2 * band + ratio * band + batch_size * (1 + ratio) * window
    activations = ACTIVATION_BYTES_PER_VOXEL * max(1.0, width) * batch_size * ratio * window
    field = pz * py * px  # the padded field bounds the unpadded one
    whole = int(input_in_memory) * field + int(output_in_memory) * ratio * field
    return 4 * (slabs + whole) + int(activations)


def _padded_block(source: SparseRows, plan: WindowPlan, y: int, band: XBand) -> np.ndarray:
    """Input rows [y, y + dy) and the band's columns of the padded field (reflect padding, as
    np.pad on the whole volume gives: padding is separable per axis, and a field padded along
    an axis has one window, so one band, along it)."""
    depth, height, width = source.shape
    pz, py, px = plan.padded_shape
    dy = plan.input_window[1]
    top, bottom = (0, height) if py > height else (y, y + dy)
    left, right = (0, width) if px > width else (band.left, band.left + band.width)
    block = source.region(top, bottom, left, right)
    pads = [(0, pz - depth), (0, py - height), (0, px - width)]
    if any(after for _, after in pads):
        block = np.pad(block, pads, mode="reflect")
    return block


def predict_slabs(
    run: WindowFn,
    source: SparseRows,
    plan: WindowPlan,
    ratio: int,
    *,
    batch_size: int = 1,
    normalise_windows: bool = False,
    advance: Callable[[int], None] = lambda n: None,
    band_width: int = BAND_WIDTH,
) -> Iterator[Slab]:
    """Blend the windows of `plan` over `source` and yield the finished output slabs, band by
    band (left to right) and top to bottom within a band, cropped to the field. `advance(n)` is
    told of every n windows run (`window_runs` in all)."""
    bands = x_bands(plan, band_width)
    # one accumulator for every band: a slab of the last band may still be held (it is a view)
    # while the next band starts, so a fresh one per band could hold two at once
    state = np.empty(
        (ratio * plan.padded_shape[0], plan.input_window[1], max(b.width for b in bands)),
        dtype=np.float32,
    )
    for band in bands:
        total = state[:, :, : band.width]
        total.fill(0)
        yield from _band_slabs(
            run, source, plan, ratio, band, total, batch_size, normalise_windows, advance
        )


def _band_slabs(
    run: WindowFn,
    source: SparseRows,
    plan: WindowPlan,
    ratio: int,
    band: XBand,
    total: np.ndarray,
    batch_size: int,
    normalise_windows: bool,
    advance: Callable[[int], None],
) -> Iterator[Slab]:
    """The finished slabs of one band's columns [band.x0, band.x1), top to bottom, summed in
    `total` (zeros of (r * padded depth, dy, band.width))."""
    depth, height, width = source.shape
    dz, dy, dx = plan.input_window
    out_window = (ratio * dz, dy, dx)
    weight = gaussian_weight(out_window)
    pz, py, px = plan.padded_shape
    cover_z = axis_coverage(plan.starts[0], dz, pz, ratio)[: ratio * depth, None, None]
    cover_y = axis_coverage(plan.starts[1], dy, py)[:, None]
    right = min(band.x1, width)  # the band's last finished column, cropped to the field
    cover_x = axis_coverage(plan.starts[2], dx, px)[band.x0 : right]
    columns = slice(band.x0 - band.left, right - band.left)
    batch = np.empty((batch_size, 1, dz, dy, dx), dtype=np.float32)
    top = 0  # padded row of total[:, 0]

    def finished(stop: int) -> Slab | None:
        """Rows [top, stop) of the band's columns normalised in place and cropped to the field
        (None when all padding): those rows are never added to again."""
        rows = min(stop, height) - top
        if rows <= 0:
            return None
        block = total[: ratio * depth, :rows, columns]
        block /= cover_z  # one axis at a time: in place, no temporary of the slab's size
        block /= cover_y[top : top + rows]
        block /= cover_x
        return Slab(top, band.x0, block)

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
        block = _padded_block(source, plan, y, band)
        pending: list[tuple[int, int]] = []
        for z in plan.starts[0]:
            for x in band.starts:
                local = x - band.left
                tile = block[z : z + dz, :, local : local + dx]
                batch[len(pending), 0] = zscore_window(tile) if normalise_windows else tile
                pending.append((z, local))
                if len(pending) == batch_size:
                    flush(pending)
                    pending = []
        if pending:
            flush(pending)
    slab = finished(top + dy)
    if slab is not None:
        yield slab


def place(volume: np.ndarray, slab: Slab) -> None:
    """Copy `slab` into its place in an output `volume` of the whole field."""
    rows, cols = slab.data.shape[1:]
    volume[:, slab.y0 : slab.y0 + rows, slab.x0 : slab.x0 + cols] = slab.data
