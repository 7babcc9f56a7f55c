"""The validated description of one SparseSSP model.

Everything that shapes a network lives here, so that a checkpoint, a package and a training config
all carry the same small object and `build_net(spec)` can rebuild the exact network from it.

The geometry rules (which depths and sizes a network accepts, which combinations are impossible)
are not written here but in `sparsessp_bmz.nets.geometry`, which needs only the standard library:
a bioimage.io package rebuilds its network from a shipped copy of the nets modules, without this
project or pydantic, and must derive exactly the same geometry. `ModelSpec` adds what pydantic is
good at on top of that mixin: field validation, defaults with descriptions, and JSON round trips.
The names below are re-exported so that `sparsessp_bmz.spec` stays the one place to import from.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sparsessp_bmz.nets.geometry import (
    EMBEDDINGS,
    INTERPOLATIONS,
    NUM_LEVELS,
    PAPER_ENCODER_CHANNELS,
    PROJECTIONS,
    SPARSITY_RATIOS,
    TOPOLOGIES,
    XY_MULTIPLE,
    Embedding,
    GeometryMixin,
    Interpolation,
    NetGeometry,
    Projection,
    SparsityRatio,
    Topology,
)

__all__ = [
    "EMBEDDINGS",
    "INTERPOLATIONS",
    "NUM_LEVELS",
    "PAPER_ENCODER_CHANNELS",
    "PROJECTIONS",
    "SPARSITY_RATIOS",
    "TOPOLOGIES",
    "XY_MULTIPLE",
    "Embedding",
    "GeometryMixin",
    "Interpolation",
    "ModelSpec",
    "NetGeometry",
    "Projection",
    "SparsityRatio",
    "Topology",
]


class ModelSpec(GeometryMixin, BaseModel):
    """One SparseSSP network: which structure, how sparse, which topology, how wide.

    `patch` is the training patch in *target* voxels (D, H, W); the network input has D/r slices.
    Topologies that fold depth into channels (2d, 2to3d, 3to2d) are tied to that depth; the pure 3D
    network accepts any depth its z downsampling allows. y and x are free multiples of 16. The
    derived geometry (`encoder_channels`, `level_depths`, `check_input_shape`, `model_id`, ...)
    comes from `GeometryMixin`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    organelle: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        description="Structure the model predicts (a name from the training manifest).",
    )
    ratio: SparsityRatio = Field(2, description="Sparsity ratio r: one TL slice every r slices.")
    topology: Topology = "3to2d"
    interpolation: Interpolation = "prefix"
    projection: Projection = "3d"
    embedding: Embedding = Field(
        "none",
        description="Task embedding of a multi-task network; 'none' is one net per organelle.",
    )
    tasks: tuple[str, ...] = Field(
        (),
        description="Structures of a multi-task network, in task-index order; `organelle` is the "
        "task the network predicts when no task is given (and the one baked into its package).",
    )
    width: float = Field(1.0, gt=0, le=8, description="Multiplier on the paper's channel counts.")
    units: int = Field(256, ge=1, description="U, the uniform channel count of the 2D side.")
    patch: tuple[int, int, int] = Field((32, 128, 128), description="Target patch (D, H, W).")

    @field_validator("patch")
    @classmethod
    def _patch_positive(cls, patch: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(size < 1 for size in patch):
            raise ValueError(f"patch sizes must be positive, got {patch}")
        return patch

    @model_validator(mode="after")
    def _check_geometry(self) -> ModelSpec:
        self.check_description()
        return self

    def for_task(self, organelle: str) -> ModelSpec:
        """The same network described as predicting `organelle` (one of the tasks)."""
        return ModelSpec(**{**self.model_dump(), "organelle": organelle})

    def net_geometry(self) -> NetGeometry:
        """The same description as the plain dataclass a shipped package builds from."""
        return NetGeometry(**self.model_dump())
