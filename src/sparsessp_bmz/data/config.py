"""Settings of the data layer, validated once so that a typo fails before hours of training."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

VoxelSize = tuple[float, float, float]

#: The RepMode/SparseSSP grid: labels are resampled to 0.29 um isotropic voxels.
DEFAULT_VOXEL_SIZE_UM: VoxelSize = (0.29, 0.29, 0.29)


def _positive_voxel(value: VoxelSize | None) -> VoxelSize | None:
    if value is not None and min(value) <= 0:
        raise ValueError(f"voxel sizes must be positive (z, y, x) in micrometres, got {value}")
    return value


class DataSettings(BaseModel):
    """Where the data is, which grid it is brought to, how it is split and sampled.

    Defaults follow RepMode's protocol (0.29 um isotropic, per structure 75/25 train/test with
    seed 42, then 90/10 train/val) so that numbers stay comparable with the paper.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest: Path = Field(description="CSV manifest; its paths are relative to the CSV itself.")
    voxel_size_um: VoxelSize = Field(
        DEFAULT_VOXEL_SIZE_UM, description="Target grid (z, y, x) in micrometres."
    )
    fallback_voxel_size_um: VoxelSize | None = Field(
        None,
        description="Voxel size (z, y, x) in um for files that do not record one (plain TIFF).",
    )
    structures: tuple[str, ...] | None = Field(
        None, description="Structures to use; None means every structure of the manifest."
    )
    split_seed: int = 42
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    samples_per_epoch: int = Field(1000, ge=1)
    patches_per_volume: int = Field(
        8,
        ge=1,
        description="Consecutive samples drawn from one volume, so a small cache still hits.",
    )
    cache_mb: float = Field(
        1024.0, gt=0.0, description="Budget of decoded volumes kept per process (each worker)."
    )
    flips: bool = Field(True, description="Random flips along z, y and x.")
    seed: int = Field(0, description="Seed of the crop/flip sampling (not of the split).")

    _check_voxel = field_validator("voxel_size_um", "fallback_voxel_size_um")(_positive_voxel)

    @model_validator(mode="after")
    def _unique_structures(self) -> DataSettings:
        if self.structures is not None and len(set(self.structures)) != len(self.structures):
            raise ValueError(f"structures must not repeat, got {list(self.structures)}")
        return self

    @property
    def splits_path(self) -> Path:
        """The split table lives next to the manifest so that it travels with the data."""
        return self.manifest.with_name(f"{self.manifest.stem}.splits.csv")


#: Structures the simulator draws, each with its own geometry (see data/simulate/geometry.py).
SIMULATED_STRUCTURES: tuple[str, ...] = (
    "dna",
    "nucleolus",
    "nuclear_envelope",
    "cell_membrane",
    "mitochondria",
    "microtubules",
    "actin",
)


class SimulationSettings(BaseModel):
    """A synthetic data set: how many fields of cells, which structures, which grid, which seed.

    The default shape (48 x 160 x 160 at 0.29 um = 14 x 46 x 46 um, about nine cells) is small
    enough for a CPU demo yet deeper than the paper's 32-slice patch, so crops can still move in z.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cells: int = Field(24, ge=1, description="Number of image files (fields of cells).")
    structures: tuple[str, ...] = SIMULATED_STRUCTURES
    seed: int = 0
    shape: tuple[int, int, int] = (48, 160, 160)
    voxel_size_um: VoxelSize = DEFAULT_VOXEL_SIZE_UM
    workers: int = Field(1, ge=1, description="Processes generating cells in parallel.")

    _check_voxel = field_validator("voxel_size_um")(_positive_voxel)

    @field_validator("structures")
    @classmethod
    def _known_structures(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in SIMULATED_STRUCTURES]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(
                f"structures must be distinct names from {list(SIMULATED_STRUCTURES)}, "
                f"got {list(value)}"
            )
        return value

    @field_validator("shape")
    @classmethod
    def _big_enough(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 8:
            raise ValueError(f"shape must be at least 8 voxels along each axis, got {value}")
        return value
