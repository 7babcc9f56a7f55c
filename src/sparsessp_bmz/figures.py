"""Pictures of predictions and scores (matplotlib, Agg backend: no display needed, offline).

- `volume_views`: per test volume, TL | prediction | target | |error| in xy, xz and yz through the
  volume's centre. Prediction and target share one contrast (the target's 0.5-99.5 percentiles),
  so a dim or washed-out prediction looks dim or washed out; |error| has its own 0..max scale.
- `intensity_histogram`: predicted against target voxel intensities (Spotlight, Fig. 3a): a
  prediction whose background does not separate from its foreground shows it here first.
- `r2_against_ratio`: test R² against the sparsity ratio per topology, with the ridge and mean
  baselines (SparseSSP, Fig. 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsessp_bmz.data.atomic import atomic_output


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: never open a window, work without a display
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:  # type: ignore[no-untyped-def]
    """Write a figure as PNG under a temporary name, then rename (never a half-written file)."""
    with atomic_output(path) as handle:
        figure.savefig(handle, format="png", dpi=80, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def _sections(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xy, xz and yz planes through the centre of a (z, y, x) volume."""
    z, y, x = (n // 2 for n in volume.shape)
    return volume[z], volume[:, y, :], volume[:, :, x]


def volume_views(
    tl: np.ndarray, prediction: np.ndarray, target: np.ndarray, title: str, path: Path
) -> Path:
    """One PNG: rows xy/xz/yz, columns TL | prediction | target | |error| (see module docstring)."""
    plt = _pyplot()
    low, high = np.percentile(target, (0.5, 99.5))
    error = np.abs(prediction - target)
    columns = [
        ("TL", tl, {"cmap": "gray"}),
        ("prediction", prediction, {"cmap": "magma", "vmin": low, "vmax": high}),
        ("target", target, {"cmap": "magma", "vmin": low, "vmax": high}),
        ("|error|", error, {"cmap": "viridis", "vmin": 0.0, "vmax": float(error.max()) or 1.0}),
    ]
    figure, axes = plt.subplots(3, 4, figsize=(12, 8), squeeze=False)
    for col, (name, volume, style) in enumerate(columns):
        for row, (plane, section) in enumerate(
            zip(("xy", "xz", "yz"), _sections(volume), strict=True)
        ):
            ax = axes[row][col]
            ax.imshow(section, interpolation="nearest", aspect="equal", **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(plane)
    figure.suptitle(title)
    return _save(figure, path)


def intensity_histogram(prediction: np.ndarray, target: np.ndarray, title: str, path: Path) -> Path:
    """Histograms of predicted and target voxel intensities on shared bins (log counts)."""
    plt = _pyplot()
    low = float(min(prediction.min(), target.min()))
    high = float(max(prediction.max(), target.max()))
    bins = np.linspace(low, high if high > low else low + 1.0, 101)
    figure, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(target.ravel(), bins=bins, histtype="step", label="target", log=True)
    ax.hist(prediction.ravel(), bins=bins, histtype="step", label="prediction", log=True)
    ax.set_xlabel("z-scored intensity")
    ax.set_ylabel("voxels")
    ax.legend()
    ax.set_title(title)
    return _save(figure, path)


@dataclass(frozen=True)
class RatioPoint:
    """Test R² of one (topology, ratio) model and of its baselines (NaN: not measured)."""

    topology: str
    ratio: int
    r2: float
    baselines: Mapping[str, float]


def r2_against_ratio(points: Sequence[RatioPoint], title: str, path: Path) -> Path:
    """Test R² against r, one line per topology, dashed lines for the baselines. Several points
    at one (topology, r) (several structures) are averaged, as the paper's "All" row; baselines
    are averaged over every point at an r (they do not depend on the topology)."""
    plt = _pyplot()

    def mean_at(ratio: int, values: Sequence[tuple[int, float]]) -> float:
        found = [v for r, v in values if r == ratio and np.isfinite(v)]
        return float(np.mean(found)) if found else float("nan")

    figure, ax = plt.subplots(figsize=(6, 4))
    ratios = sorted({p.ratio for p in points})
    for topology in sorted({p.topology for p in points}):
        mine = [(p.ratio, p.r2) for p in points if p.topology == topology]
        xs = sorted({r for r, _ in mine})
        ax.plot(xs, [mean_at(r, mine) for r in xs], marker="o", label=topology)
    for key in sorted({k for p in points for k in p.baselines}):
        values = [(p.ratio, p.baselines.get(key, float("nan"))) for p in points]
        ys = [mean_at(r, values) for r in ratios]
        style = {"color": "gray" if key == "mean" else "black", "linestyle": "--", "marker": "x"}
        ax.plot(ratios, ys, label=f"{key} baseline", **style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ratios, [str(r) for r in ratios])
    ax.set_xlabel("sparsity ratio r")
    ax.set_ylabel("test R²")
    ax.set_title(title)
    ax.legend()
    return _save(figure, path)
