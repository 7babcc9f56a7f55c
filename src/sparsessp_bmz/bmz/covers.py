"""The cover image: z maximum projections of TL input | prediction | ground truth.

Each panel is contrast-stretched on its own (percentiles 1 and 99.8) because the three are on
different scales; panels are upscaled by an integer factor with nearest neighbours so that a
tiny test crop is still visible on bioimage.io, and the PNG stays far below 500 KB. The row is
centred on a white canvas of aspect ratio 2:1, the wide form the bioimage.io collection accepts
(1:1 or 2:1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Approximate height (pixels) of the cover; the upscaling factor is an integer.
TARGET_HEIGHT = 256
GAP = 4
MAX_BYTES = 500 * 1024


def _panel(volume_zyx: np.ndarray, scale: int) -> np.ndarray:
    projection = volume_zyx.max(axis=0).astype(np.float64)
    low, high = np.percentile(projection, (1.0, 99.8))
    scaled = np.clip((projection - low) / max(high - low, 1e-12), 0.0, 1.0)
    image = np.round(scaled * 255).astype(np.uint8)
    return np.kron(image, np.ones((scale, scale), dtype=np.uint8))


def _two_to_one(image: np.ndarray) -> np.ndarray:
    """`image` centred on a white canvas whose width is twice its height."""
    height, width = image.shape
    rows = max(height, (width + 1) // 2)
    canvas = np.full((rows, 2 * rows), 255, dtype=np.uint8)
    top = (canvas.shape[0] - height) // 2
    left = (canvas.shape[1] - width) // 2
    canvas[top : top + height, left : left + width] = image
    return canvas


def write_cover(
    path: Path, sparse: np.ndarray, prediction: np.ndarray, target: np.ndarray | None
) -> Path:
    """Write the cover PNG; panels are (z, y, x) volumes with equal y/x sizes."""
    from PIL import Image

    height = sparse.shape[1]
    scale = max(1, TARGET_HEIGHT // height)
    volumes = [sparse, prediction] + ([target] if target is not None else [])
    panels = [_panel(v, scale) for v in volumes]
    gap = np.full((panels[0].shape[0], GAP), 255, dtype=np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    image = _two_to_one(np.concatenate(row, axis=1))
    Image.fromarray(image, mode="L").save(path, format="PNG", optimize=True)
    if path.stat().st_size > MAX_BYTES:
        raise RuntimeError(f"cover {path} is {path.stat().st_size} bytes, above {MAX_BYTES}")
    return path
