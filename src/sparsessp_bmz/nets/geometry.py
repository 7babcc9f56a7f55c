"""What a SparseSSP network is made of: the choices that describe it and the geometry they imply.

Why a module of its own, with the standard library only: a bioimage.io package must rebuild its
network where this project is not installed, so it ships the network as one generated python file
(`sparsessp_bmz.bmz.netsource`) that may import torch and the standard library and nothing else.
The derived geometry (channels, the z pooling schedule, level depths, the input sizes a network
accepts) and the rules that reject impossible descriptions therefore live here, once, in
`GeometryMixin`. Two classes inherit them:

- `sparsessp_bmz.spec.ModelSpec`, the project's pydantic description (field validation, JSON);
- `NetGeometry`, a frozen dataclass with the same fields, which the shipped file builds from.

The network reads only the mixin's interface, so the project and its packages cannot disagree.

No `from __future__ import annotations` here (nor in the other bundled modules): a dataclass with
string annotations fails to build when its module is executed without being registered in
`sys.modules`, which is how some tools load an architecture file.
"""

import dataclasses
import math
from typing import TYPE_CHECKING, Literal

Topology = Literal["3d", "2d", "2to3d", "3to2d"]
Interpolation = Literal["prefix", "postfix", "none"]
Projection = Literal["3d", "2d"]
Embedding = Literal["none", "dodnet", "repmode", "tsns"]
SparsityRatio = Literal[1, 2, 4, 8]

TOPOLOGIES: tuple[Topology, ...] = ("3d", "2d", "2to3d", "3to2d")
INTERPOLATIONS: tuple[Interpolation, ...] = ("prefix", "postfix", "none")
PROJECTIONS: tuple[Projection, ...] = ("3d", "2d")
EMBEDDINGS: tuple[Embedding, ...] = ("none", "dodnet", "repmode", "tsns")
SPARSITY_RATIOS: tuple[int, ...] = (1, 2, 4, 8)

#: Paper encoder channels (RepMode's layout); the last level is the bottleneck.
PAPER_ENCODER_CHANNELS: tuple[int, ...] = (32, 64, 128, 256, 256)
NUM_LEVELS = len(PAPER_ENCODER_CHANNELS)
#: Every level but the first halves y and x, so y and x must be multiples of this.
XY_MULTIPLE = 2 ** (NUM_LEVELS - 1)

_TWO_D_DECODERS = ("2d", "3to2d")
_HYBRIDS = ("2to3d", "3to2d")


def _two_adic_valuation(n: int) -> int:
    """How many times n can be halved exactly (n >= 1)."""
    return (n & -n).bit_length() - 1


class GeometryMixin:
    """Derived geometry and consistency rules of a network description.

    A plain mixin: the class it is mixed into provides the fields below (pydantic fields in
    `ModelSpec`, dataclass fields in `NetGeometry`). The annotations exist for readers and type
    checkers only; at run time they would make pydantic and dataclasses treat them as fields.
    """

    if TYPE_CHECKING:
        organelle: str
        ratio: int
        topology: Topology
        interpolation: Interpolation
        projection: Projection
        embedding: Embedding
        tasks: tuple[str, ...]
        width: float
        units: int
        patch: tuple[int, int, int]

        def for_task(self, organelle: str) -> "GeometryMixin":
            """The same network described as predicting `organelle` (same class)."""
            ...

    # ---- consistency ----------------------------------------------------------------------

    def check_description(self) -> None:
        """Raise ValueError saying why, when the fields describe no network that can be built."""
        depth, height, width = self.patch
        if depth % self.ratio:
            raise ValueError(
                f"patch depth {depth} is not divisible by the sparsity ratio r={self.ratio}: the "
                f"sparse input would not have a whole number of slices; use a multiple of "
                f"{self.ratio}"
            )
        if height % XY_MULTIPLE or width % XY_MULTIPLE:
            raise ValueError(
                f"patch y/x sizes {height}x{width} must be multiples of {XY_MULTIPLE} "
                f"(the network halves y and x {NUM_LEVELS - 1} times)"
            )
        if self.interpolation == "none" and self.topology not in _TWO_D_DECODERS:
            raise ValueError(
                f"interpolation 'none' needs a 2D decoder whose head emits the D output slices as "
                f"channels; topology '{self.topology}' decodes in 3D: use 'prefix' or 'postfix', "
                f"or topology '2d'/'3to2d'"
            )
        if self.projection == "2d" and self.topology not in _HYBRIDS:
            raise ValueError(
                f"projection only applies to the hybrid topologies {_HYBRIDS}, which transform "
                f"between 3D and 2D features; topology '{self.topology}' has no such transform: "
                f"leave projection at its default '3d'"
            )
        self._check_folding()
        self._check_tasks()

    def _check_tasks(self) -> None:
        if self.embedding == "none":
            if self.tasks:
                raise ValueError(
                    "tasks are only used by a multi-task embedding (dodnet, repmode, tsns); "
                    "with embedding 'none' leave tasks empty"
                )
            return
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(
                f"embedding '{self.embedding}' needs tasks: the distinct structures it learns, "
                f"got {list(self.tasks)}"
            )
        if self.organelle not in self.tasks:
            raise ValueError(
                f"organelle '{self.organelle}' must be one of the tasks {list(self.tasks)}"
            )

    def _check_folding(self) -> None:
        if self.topology not in _HYBRIDS:
            return
        depths = self.level_depths
        splits_units = self.projection == "3d" or self.topology == "2to3d"
        if splits_units and any(self.units % d for d in depths):
            raise ValueError(
                f"{self.topology} with projection '{self.projection}' splits U={self.units} "
                f"channels into U/D_k channels at each level depth D_k, so U must be divisible by "
                f"every level depth {depths}; choose U as a multiple of {math.lcm(*depths)} or use "
                f"a power-of-two patch depth"
            )
        if self.topology == "2to3d" and self.projection == "3d":
            channels = self.encoder_channels
            bad = [(c, d) for c, d in zip(channels, depths, strict=True) if c % d]
            if bad:
                raise ValueError(
                    f"2to3d with projection '3d' unfolds each 2D level's C_k channels into depth "
                    f"D_k, so C_k must be divisible by D_k; (C_k, D_k) pairs {bad} are not. Raise "
                    f"width, reduce the patch depth, or use projection '2d'"
                )

    # ---- tasks ------------------------------------------------------------------------------

    @property
    def num_tasks(self) -> int:
        """Number of structures a multi-task network learns (0 for single-task)."""
        return len(self.tasks)

    @property
    def task_index(self) -> int:
        """Index of `organelle` among the tasks (0 for single-task networks)."""
        return self.tasks.index(self.organelle) if self.tasks else 0

    # ---- derived geometry -------------------------------------------------------------------

    @property
    def encoder_channels(self) -> tuple[int, ...]:
        """Channels per level (paper channels times `width`, at least one)."""
        return tuple(max(1, round(c * self.width)) for c in PAPER_ENCODER_CHANNELS)

    @property
    def input_patch(self) -> tuple[int, int, int]:
        """The sparse TL patch (D/r, H, W) that goes with `patch`."""
        depth, height, width = self.patch
        return depth // self.ratio, height, width

    @property
    def grid_depth(self) -> int:
        """Depth of the grid the network's 3D layers work at (dense after prefix upsampling)."""
        return self.patch[0] if self.interpolation == "prefix" else self.patch[0] // self.ratio

    @property
    def z_pools(self) -> tuple[bool, ...]:
        """For each of the 4 downsamplings, whether it also halves z.

        z is halved as often as the grid depth allows, up to 4 times; a shallow grid (sparse input
        at high r, or a single plane) keeps its few slices at the high-resolution levels and pools
        z only late, or never.
        """
        steps = NUM_LEVELS - 1
        pooled = min(steps, _two_adic_valuation(self.grid_depth))
        return tuple(step >= steps - pooled for step in range(steps))

    @property
    def z_factor(self) -> int:
        """Total z downsampling of the 3D part of the network."""
        return 2 ** sum(self.z_pools)

    @property
    def level_depths(self) -> tuple[int, ...]:
        """Depth D_k of the 3D features at each level for the training patch."""
        depths = [self.grid_depth]
        for pool in self.z_pools:
            depths.append(depths[-1] // 2 if pool else depths[-1])
        return tuple(depths)

    @property
    def fixed_depth(self) -> bool:
        """Whether the network only accepts the patch depth (depth folded into channels)."""
        return self.topology != "3d"

    @property
    def input_depth_step(self) -> int:
        """Granularity of allowed sparse input depths for the 3D topology (0 when fixed)."""
        if self.fixed_depth:
            return 0
        if self.interpolation == "prefix":
            return max(1, self.z_factor // self.ratio)
        return self.z_factor

    def check_input_shape(self, depth: int, height: int, width: int) -> None:
        """Raise ValueError saying why, when the network cannot take a sparse input this size."""
        if self.fixed_depth and depth != self.input_patch[0]:
            raise ValueError(
                f"topology '{self.topology}' folds depth into channels and needs exactly "
                f"{self.input_patch[0]} input slices, got {depth}"
            )
        if not self.fixed_depth and (depth < 1 or depth % self.input_depth_step):
            raise ValueError(
                f"input depth {depth} must be a positive multiple of {self.input_depth_step}"
            )
        if (
            height < XY_MULTIPLE
            or width < XY_MULTIPLE
            or height % XY_MULTIPLE
            or width % XY_MULTIPLE
        ):
            raise ValueError(
                f"input y/x {height}x{width} must be positive multiples of {XY_MULTIPLE}"
            )

    @property
    def structures(self) -> tuple[str, ...]:
        """The structures the network predicts: its tasks, else its one organelle."""
        return tuple(self.tasks) or (self.organelle,)

    @property
    def is_plane(self) -> bool:
        """A network trained on single planes: one TL plane in, one fluorescence plane out
        (patch depth 1, ratio 1, topology '2d'); it ships as a 2D package."""
        return self.patch[0] == 1 and self.ratio == 1 and self.topology == "2d"

    @property
    def model_id(self) -> str:
        """Stable, human-readable identifier, e.g. `sparsessp-dna-r4-3to2d`.

        Non-default interpolation/projection/embedding are appended so distinct models never share
        an id; a plane model ends in `-plane` (its run folder must not be a volume model's).
        """
        parts = ["sparsessp", self.organelle.lower().replace("_", "-"), f"r{self.ratio}"]
        parts.append(self.topology)
        if self.interpolation != "prefix":
            parts.append(self.interpolation)
        if self.projection != "3d":
            parts.append(f"proj{self.projection}")
        if self.embedding != "none":
            parts.append(self.embedding)
        if self.is_plane:
            parts.append("plane")
        return "-".join(parts)


def _check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class NetGeometry(GeometryMixin):
    """A network description without pydantic: what a shipped package builds its network from.

    Same fields and defaults as `sparsessp_bmz.spec.ModelSpec` (a test keeps them equal), so a
    package's architecture kwargs (`ModelSpec.model_dump(mode="json")`) build it directly; JSON
    lists become tuples. The choices and the consistency rules are checked as in `ModelSpec`;
    the pydantic-only constraints (organelle name pattern, width upper bound) are not.
    """

    organelle: str
    ratio: SparsityRatio = 2
    topology: Topology = "3to2d"
    interpolation: Interpolation = "prefix"
    projection: Projection = "3d"
    embedding: Embedding = "none"
    tasks: tuple[str, ...] = ()
    width: float = 1.0
    units: int = 256
    patch: tuple[int, int, int] = (32, 128, 128)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "patch", tuple(self.patch))
        _check_choice("ratio", self.ratio, SPARSITY_RATIOS)
        _check_choice("topology", self.topology, TOPOLOGIES)
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        _check_choice("projection", self.projection, PROJECTIONS)
        _check_choice("embedding", self.embedding, EMBEDDINGS)
        if len(self.patch) != 3 or any(size < 1 for size in self.patch):
            raise ValueError(f"patch must be three positive sizes (D, H, W), got {self.patch}")
        if not self.width > 0 or self.units < 1:
            raise ValueError(f"width must be > 0 and units >= 1, got {self.width}, {self.units}")
        self.check_description()

    def for_task(self, organelle: str) -> "NetGeometry":
        """The same network described as predicting `organelle` (one of the tasks)."""
        return dataclasses.replace(self, organelle=organelle)
