"""Where the structures of a colony of cells are: densities on the voxel grid.

Sizes are set in micrometres and converted with the voxel size, so another grid gives the same
cells. A field is a confluent colony (as hiPSC fields in the AllenCell collection): a Voronoi
tiling in xy, each cell a column from the coverslip up to a dome-shaped top. Curvilinear
structures (mitochondria, microtubules, stress fibres) are random walks splatted as points, which
the optics then blur into tubes; unlabelled vesicles and droplets add refractive-index contrast that
no fluorescence channel shows, as in real cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

import numpy as np
from scipy.ndimage import gaussian_filter, zoom
from scipy.spatial import cKDTree

CELL_SPACING_UM = (12.0, 16.0)
CELL_HEIGHT_UM = (6.0, 9.0)
#: Height of the coverslip above the first slice: stacks start at varying depths in practice.
COVERSLIP_UM = (0.3, 4.0)
MEMBRANE_SIGMA_UM = 0.2
#: A nucleus or nucleolus is the set of voxels where its own density exceeds this (the density
#: is 1 inside and falls to 0 across the edge, so 0.5 is the edge itself).
OBJECT_LEVEL = 0.5


@dataclass(frozen=True)
class Field:
    """All densities of one field, float32 (Z, Y, X), roughly in [0, 1].

    `masks`: the true objects of the blob-like structures (`dna`: nuclei, `nucleolus`), uint16
    labels (0 = background), which evaluation scores segmentations against.
    """

    structures: dict[str, np.ndarray]
    cell_mask: np.ndarray
    vesicles: np.ndarray
    texture: np.ndarray
    masks: dict[str, np.ndarray]


def smooth_noise(shape: tuple[int, ...], coarse: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise, made at 1/coarse resolution because only its texture
    matters and a full-resolution blur would dominate the simulator's run time."""
    small = tuple(max(2, n // coarse) for n in shape)
    noise = gaussian_filter(rng.standard_normal(small).astype(np.float32), 1.0)
    noise /= noise.std() + 1e-6
    return zoom(noise, [n / s for n, s in zip(shape, small, strict=True)], order=1)[
        tuple(slice(0, n) for n in shape)
    ]


def _splat(points: np.ndarray, weights: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Nearest-voxel accumulation of weighted points (those outside the grid are dropped)."""
    index = np.rint(points).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.array(shape)), axis=1)
    flat = np.ravel_multi_index(index[inside].T, shape)
    counts = np.bincount(flat, weights=weights[inside], minlength=int(np.prod(shape)))
    return counts.reshape(shape).astype(np.float32)


class _Colony:
    """Cells of one field and the lookups the structure generators share."""

    def __init__(self, shape: tuple[int, int, int], voxel: tuple[float, float, float], rng):
        self.shape = shape
        self.voxel = np.array(voxel)
        depth, height, width = shape
        spacing = rng.uniform(*CELL_SPACING_UM) / voxel[1]
        gy, gx = np.meshgrid(
            np.arange(-0.5, height / spacing + 1.0),
            np.arange(-0.5, width / spacing + 1.0),
            indexing="ij",
        )
        centers = np.stack([gy.ravel(), gx.ravel()], axis=1) * spacing
        centers += rng.uniform(-0.3, 0.3, centers.shape) * spacing
        self.centers = centers
        pixels = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij"), -1)
        distance, nearest = cKDTree(centers).query(pixels.reshape(-1, 2), k=2)
        self.label = nearest[:, 0].reshape(height, width)
        # Distance to the Voronoi border between the two nearest centres, in pixels.
        gap = np.linalg.norm(centers[nearest[:, 1]] - centers[nearest[:, 0]], axis=1)
        border = (distance[:, 1] ** 2 - distance[:, 0] ** 2) / (2 * gap)
        self.border = border.reshape(height, width).astype(np.float32)
        self.inradius = np.zeros(len(centers))
        np.maximum.at(self.inradius, self.label.ravel(), self.border.ravel())
        self.bottom = min(rng.uniform(*COVERSLIP_UM) / voxel[0], 0.3 * depth)
        top_limit = depth - 2.0 - self.bottom
        self.cell_height = np.minimum(
            rng.uniform(*CELL_HEIGHT_UM, len(centers)) / voxel[0], top_limit
        )
        # A dome: lowest at the cell border, highest over the cell's middle.
        reach = np.clip(self.border / np.maximum(self.inradius[self.label], 1.0), 0.0, 1.0)
        dome = 1.0 - (1.0 - reach) ** 2
        self.top = (self.bottom + self.cell_height[self.label] * (0.4 + 0.6 * dome)).astype(
            np.float32
        )
        self.z = np.arange(depth, dtype=np.float32)[:, None, None]
        self.mask = (self.z >= self.bottom) & (self.z < self.top[None])
        self.nuclei = self._nuclei(rng)

    def _nuclei(self, rng: np.random.Generator) -> np.ndarray:
        """(cell, 7): centre z, y, x, semi-axes z, y, x, xy rotation; in voxels."""
        n = len(self.centers)
        radius_xy = self.inradius * rng.uniform(0.55, 0.7, n)
        ratio = rng.uniform(0.8, 1.0, n)
        radius_z = np.minimum(self.cell_height * rng.uniform(0.3, 0.38, n), 4.5 / self.voxel[0])
        offset = rng.uniform(-0.1, 0.1, (n, 2)) * self.inradius[:, None]
        cz = self.bottom + self.cell_height * rng.uniform(0.4, 0.5, n)
        return np.column_stack(
            [
                cz,
                self.centers + offset,
                radius_z,
                radius_xy,
                radius_xy * ratio,
                rng.uniform(0, np.pi, n),
            ]
        )

    def cytoplasm_points(self, cell: np.ndarray, points: np.ndarray, nucleus: np.ndarray):
        """Which points lie in the cytoplasm of their own cell (inside it, outside its nucleus)."""
        index = np.rint(points).astype(np.int64)
        inside = np.all((index >= 0) & (index < np.array(self.shape)), axis=1)
        z, y, x = np.where(inside[:, None], index, 0).T
        return (
            inside
            & (self.label[y, x] == cell)
            & (points[:, 0] >= self.bottom)
            & (points[:, 0] < self.top[y, x])
            & (nucleus[z, y, x] < 0.5)
        )


def _ellipsoid_radius(row: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """Normalised ellipsoid radius (1 on the surface) inside a bounding box."""
    cz, cy, cx, az, ay, ax, angle = row
    z, y, x = np.ogrid[box]
    dy, dx = y - cy, x - cx
    u = dy * np.cos(angle) + dx * np.sin(angle)
    v = -dy * np.sin(angle) + dx * np.cos(angle)
    return np.sqrt(((z - cz) / az) ** 2 + (u / ay) ** 2 + (v / ax) ** 2).astype(np.float32)


def _box(center: np.ndarray, radius: float, shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    low = np.maximum(np.floor(center - radius).astype(int), 0)
    high = np.minimum(np.ceil(center + radius).astype(int) + 1, shape)
    if np.any(high <= low):
        return None
    return tuple(slice(a, b) for a, b in zip(low, high, strict=True))


def _nuclear(colony: _Colony, texture: np.ndarray, rng: np.random.Generator):
    """Nucleus, DNA, nucleoli and envelope, drawn cell by cell inside bounding boxes, and the
    labels of nuclei and nucleoli (`OBJECT_LEVEL` of each one's own density; a later object
    overwrites an earlier one where they touch). The labels take no random draws, so every
    density is the same as without them."""
    shape = colony.shape
    nucleus, envelope, nucleolus = (np.zeros(shape, np.float32) for _ in range(3))
    nuclei, nucleoli = (np.zeros(shape, np.uint16) for _ in range(2))
    nucleus_ids, nucleolus_ids = count(1), count(1)
    edge = 0.25 / colony.voxel[1]
    for row in colony.nuclei:
        if row[3:6].min() < 1.0:  # a cell centred outside the field has no room for a nucleus
            continue
        box = _box(row[:3], float(row[3:6].max()) + 3, shape)
        if box is None:
            continue
        rho = _ellipsoid_radius(row, box)
        mean_axis = float(row[3:6].mean())
        inside = 1.0 / (1.0 + np.exp(np.clip((rho - 1.0) * mean_axis / edge, -30, 30)))
        nucleus[box] = np.maximum(nucleus[box], inside)
        nuclei[box][inside > OBJECT_LEVEL] = next(nucleus_ids)
        shell = np.exp(-0.5 * ((rho - 1.0) * mean_axis / (0.6 * edge)) ** 2)
        envelope[box] = np.maximum(envelope[box], shell)
        for _ in range(rng.integers(1, 4)):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            centre = row[:3] + direction * rng.uniform(0, 0.45) * row[3:6]
            size = rng.uniform(0.7, 1.3) / colony.voxel[1]
            z, y, x = np.ogrid[box]
            d2 = ((z - centre[0]) * colony.voxel[0] / colony.voxel[1]) ** 2
            d2 = d2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
            blob = np.exp(-0.5 * d2 / size**2).astype(np.float32) * inside
            nucleolus[box] = np.maximum(nucleolus[box], blob)
            nucleoli[box][blob > OBJECT_LEVEL] = next(nucleolus_ids)
    dna = nucleus * (0.8 + 0.2 * np.clip(texture, -2, 2)) * (1.0 - 0.85 * nucleolus)
    masks = {"dna": _relabel(nuclei), "nucleolus": _relabel(nucleoli)}
    return nucleus, np.clip(dna, 0, None), nucleolus, envelope, masks


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels 1..n without gaps (an object wholly overwritten by a later one leaves none)."""
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)[0].astype(np.uint16)


def _membrane(colony: _Colony) -> tuple[np.ndarray, np.ndarray]:
    """Plasma membrane (lateral borders, top and bottom) and the cortical actin just inside it."""
    sigma = MEMBRANE_SIGMA_UM / colony.voxel[1]
    in_column = (colony.z >= colony.bottom - 2 * sigma) & (colony.z <= colony.top + 2 * sigma)
    lateral = np.exp(-0.5 * (colony.border / sigma) ** 2)[None] * in_column
    top = np.exp(-0.5 * ((colony.z - colony.top) / sigma) ** 2)
    bottom = np.exp(-0.5 * ((colony.z - colony.bottom) / sigma) ** 2)
    membrane = np.maximum(np.maximum(lateral, top), bottom).astype(np.float32)
    cortex_lateral = np.exp(-0.5 * ((colony.border - 3 * sigma) / (2 * sigma)) ** 2)[None]
    cortex_top = np.exp(-0.5 * ((colony.top - 3 * sigma - colony.z) / (2 * sigma)) ** 2)
    cortex = np.maximum(cortex_lateral, cortex_top) * colony.mask
    return membrane, cortex.astype(np.float32)


def _walks(
    starts: np.ndarray,
    steps: int,
    step_um: float,
    persistence: float,
    flatness: float,
    voxel: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Persistent random walks (walkers, steps, 3) in voxels, flattened towards the coverslip."""
    direction = rng.normal(size=starts.shape) * np.array([flatness, 1.0, 1.0])
    path = np.empty((len(starts), steps, 3))
    position = starts.astype(float)
    scale = step_um / voxel
    for t in range(steps):
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        position = position + direction * scale
        path[:, t] = position
        direction += (1 - persistence) * rng.normal(size=starts.shape) * np.array([flatness, 1, 1])
    return path


def _in_cells(
    colony: _Colony, cells: np.ndarray, paths: np.ndarray, nucleus: np.ndarray, stop_at_exit: bool
) -> np.ndarray:
    valid = colony.cytoplasm_points(
        np.repeat(cells, paths.shape[1]), paths.reshape(-1, 3), nucleus
    ).reshape(paths.shape[:2])
    return np.cumprod(valid, axis=1).astype(bool) if stop_at_exit else valid


def _random_cytoplasm(colony: _Colony, per_cell: int, nucleus: np.ndarray, rng):
    """Points uniformly in each cell's cytoplasm (by rejection), with the cell they belong to."""
    n = len(colony.centers)
    cells = np.repeat(np.arange(n), per_cell * 6)
    spread = colony.inradius[cells, None] * 1.3
    points = np.column_stack(
        [
            rng.uniform(colony.bottom, colony.bottom + colony.cell_height[cells]),
            colony.centers[cells] + rng.uniform(-1, 1, (len(cells), 2)) * spread,
        ]
    )
    keep = colony.cytoplasm_points(cells, points, nucleus)
    cells, points = cells[keep], points[keep]
    first = np.concatenate([[True], cells[1:] != cells[:-1]])
    rank = np.arange(len(cells)) - np.maximum.accumulate(np.where(first, np.arange(len(cells)), 0))
    return cells[rank < per_cell], points[rank < per_cell]


def _mitochondria(colony: _Colony, nucleus: np.ndarray, rng) -> np.ndarray:
    cells, starts = _random_cytoplasm(colony, 30, nucleus, rng)
    paths = _walks(starts, 24, 0.12, 0.85, 0.4, colony.voxel, rng)
    lengths = rng.integers(6, 25, len(starts))
    valid = _in_cells(colony, cells, paths, nucleus, stop_at_exit=True)
    valid &= np.arange(paths.shape[1])[None] < lengths[:, None]
    return _splat(paths[valid], np.ones(int(valid.sum())), colony.shape)


def _microtubules(colony: _Colony, nucleus: np.ndarray, rng) -> np.ndarray:
    """Fibres radiating from a centrosome above the nucleus, ending at the cell border."""
    per_cell = 40
    n = len(colony.centers)
    cells = np.repeat(np.arange(n), per_cell)
    nuclei = colony.nuclei[cells]
    centrosome = nuclei[:, :3] + np.column_stack([nuclei[:, 3] * 1.1, np.zeros((len(cells), 2))])
    paths = _walks(centrosome, 120, 0.15, 0.97, 0.5, colony.voxel, rng)
    index = np.rint(paths).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.array(colony.shape)), axis=2)
    _, y, x = np.where(inside[..., None], index, 0).transpose(2, 0, 1)
    valid = inside & (colony.label[y, x] == cells[:, None]) & (paths[..., 0] < colony.top[y, x])
    valid &= paths[..., 0] >= colony.bottom
    valid = np.cumprod(valid, axis=1).astype(bool)
    fibres = _splat(paths[valid], np.ones(int(valid.sum())), colony.shape)
    spots = _splat(centrosome[::per_cell], np.full(n, 20.0), colony.shape)
    return fibres + spots


def _stress_fibres(colony: _Colony, rng) -> np.ndarray:
    """Straight basal actin bundles across each cell, just above the coverslip."""
    per_cell = 8
    cells = np.repeat(np.arange(len(colony.centers)), per_cell)
    half = colony.inradius[cells] * 1.2
    angle = rng.uniform(0, np.pi, len(cells))
    offset = rng.uniform(-0.6, 0.6, len(cells)) * colony.inradius[cells]
    t = np.linspace(-1, 1, 80)[None] * half[:, None]
    normal = np.stack([-np.sin(angle), np.cos(angle)], 1)
    along = np.stack([np.cos(angle), np.sin(angle)], 1)
    yx = colony.centers[cells, None] + normal[:, None] * offset[:, None, None]
    yx = yx + along[:, None] * t[..., None]
    z = colony.bottom + rng.uniform(0.2, 0.8, len(cells))[:, None] / colony.voxel[0]
    points = np.concatenate([np.broadcast_to(z, t.shape)[..., None], yx], axis=2)
    index = np.rint(points[..., 1:]).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.array(colony.shape[1:])), axis=2)
    y, x = np.where(inside[..., None], index, 0).transpose(2, 0, 1)
    valid = inside & (colony.label[y, x] == cells[:, None])
    return _splat(points[valid], np.ones(int(valid.sum())), colony.shape)


def _vesicles(colony: _Colony, nucleus: np.ndarray, rng) -> np.ndarray:
    """Unlabelled droplets and vesicles: TL sees them, no fluorescence channel does."""
    _, points = _random_cytoplasm(colony, 12, nucleus, rng)
    return _splat(points, rng.uniform(0.5, 1.5, len(points)), colony.shape)


def simulate_field(
    shape: tuple[int, int, int], voxel: tuple[float, float, float], rng: np.random.Generator
) -> Field:
    """Densities of every structure of one field of cells."""
    colony = _Colony(shape, voxel, rng)
    texture = smooth_noise(shape, 4, rng)
    nucleus, dna, nucleolus, envelope, masks = _nuclear(colony, texture, rng)
    membrane, cortex = _membrane(colony)
    structures = {
        "dna": dna,
        "nucleolus": nucleolus,
        "nuclear_envelope": envelope,
        "cell_membrane": membrane,
        "mitochondria": _mitochondria(colony, nucleus, rng),
        "microtubules": _microtubules(colony, nucleus, rng),
        "actin": 0.4 * cortex + _stress_fibres(colony, rng),
    }
    return Field(
        structures, colony.mask.astype(np.float32), _vesicles(colony, nucleus, rng), texture, masks
    )
