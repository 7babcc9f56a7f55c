"""Memory guards: refuse a volume before it is allocated, with one message saying what to do.

Every step that allocates a whole volume (reading a file, resampling it, simulating a field,
predicting a field of view) first estimates its peak bytes from shapes alone (file headers are
read lazily) and compares them with one limit:

1. `--memory-limit GB` of the command (set for the command's duration with `memory_limit_option`),
2. else the environment variable `SPARSESSP_MEMORY_LIMIT_GB` (read here and nowhere else),
3. else `DEFAULT_FRACTION` of the memory available now (`MemAvailable` in /proc/meminfo, or
   `os.sysconf` where there is no /proc).

A numpy MemoryError after minutes of work (or the kernel's OOM killer) becomes an error before
any work, naming the bytes needed, the bytes allowed and how to raise the limit. GB here is 10^9
bytes.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sparsessp_bmz.errors import UserInputError

ENV_VAR = "SPARSESSP_MEMORY_LIMIT_GB"
#: Share of the memory available now that one volume may take by default.
DEFAULT_FRACTION = 0.5
GB = 10**9
#: The limit where the memory available cannot be told (no /proc, no sysconf).
UNKNOWN_MEMORY_LIMIT_GB = 4
#: float32, the dtype every volume is computed in.
FLOAT_BYTES = 4
#: Peak bytes per voxel of one simulated field (every structure's density, the optics'
#: temporaries and the uint16 channels), measured on 48x160x160 and 64x320x320 fields (~103).
SIMULATE_BYTES_PER_VOXEL = 110
#: Voxel sizes outside this range (um) are not a light-microscope z-stack: most often a unit
#: mistake (metres or nanometres recorded as micrometres).
PLAUSIBLE_VOXEL_UM = (0.01, 100.0)

_OPTION: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "memory_limit_gb", default=None
)


@dataclass(frozen=True)
class MemoryLimit:
    """The bytes one volume may take, and where that number came from (for the message)."""

    nbytes: int
    source: str


def format_bytes(nbytes: float) -> str:
    """1.5e9 -> '1.5 GB', 3.2e6 -> '3.2 MB' (decimal units, as `--memory-limit` takes)."""
    for unit, size in (("TB", 10**12), ("GB", GB), ("MB", 10**6)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes / 10**3:.3g} kB"


def available_memory() -> int | None:
    """Bytes of memory available to new allocations now, or None where it cannot be told."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _positive_gb(value: float, name: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise UserInputError(f"{name} must be a positive number of GB, got {value:g}")
    return value


def memory_limit() -> MemoryLimit:
    """The limit in force: the command's option, else the environment variable, else the default."""
    option = _OPTION.get()
    if option is not None:
        return MemoryLimit(int(option * GB), f"--memory-limit {option:g}")
    text = os.environ.get(ENV_VAR, "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise UserInputError(
                f"{ENV_VAR}={text!r} is not a positive number of GB; set it to e.g. 8, or unset it"
            )
        return MemoryLimit(int(value * GB), f"{ENV_VAR}={text}")
    available = available_memory()
    if available is None:
        return MemoryLimit(UNKNOWN_MEMORY_LIMIT_GB * GB, "the default where free memory is unknown")
    return MemoryLimit(
        int(available * DEFAULT_FRACTION),
        f"{DEFAULT_FRACTION:.0%} of the {format_bytes(available)} available now",
    )


@contextlib.contextmanager
def memory_limit_option(gb: float | None) -> Iterator[None]:
    """Use `--memory-limit GB` (None: keep the environment/default limit) inside the block."""
    if gb is not None:
        _positive_gb(gb, "--memory-limit")
    token = _OPTION.set(gb)
    try:
        yield
    finally:
        _OPTION.reset(token)


def check_memory(needed: int, what: str, fix: str = "") -> None:
    """Refuse `what` when its estimated peak `needed` bytes exceed the limit in force.

    `fix` is the input-side remedy (crop the image, a smaller --shape, ...); the message always
    adds how to raise the limit.
    """
    limit = memory_limit()
    if needed <= limit.nbytes:
        return
    remedy = f"{fix}, or" if fix else "or"
    raise UserInputError(
        f"{what} needs about {format_bytes(needed)} of memory, more than the "
        f"{format_bytes(limit.nbytes)} allowed ({limit.source}); {remedy} raise the limit with "
        f"--memory-limit GB (predict, simulate) or {ENV_VAR}=GB if the machine has the memory"
    )


def voxels(shape: Sequence[int]) -> int:
    """Number of voxels of `shape` (Python ints: no overflow for absurd shapes)."""
    return math.prod(int(n) for n in shape)


def check_read(shape: Sequence[int], itemsize: int, what: str) -> None:
    """Decoding `shape` voxels of `itemsize` bytes, converting them to float32 and z-scoring them
    (two float32 temporaries)."""
    check_memory(
        voxels(shape) * (int(itemsize) + 3 * FLOAT_BYTES),
        f"reading {what} ({'x'.join(map(str, shape))} voxels)",
        "crop the image or read a smaller region",
    )


def check_voxel_size(voxel_um: Sequence[float], what: str, fix: str) -> None:
    """Refuse voxel sizes no light microscope records (usually a unit mistake)."""
    low, high = PLAUSIBLE_VOXEL_UM
    if all(math.isfinite(v) and low <= v <= high for v in voxel_um):
        return
    sizes = ", ".join(f"{v:g}" for v in voxel_um)
    raise UserInputError(
        f"{what}: voxel size (z, y, x) = ({sizes}) um is implausible for a microscope z-stack "
        f"(expected {low:g} to {high:g} um per axis; a unit mix-up, e.g. metres recorded as "
        f"micrometres?); {fix}"
    )


def resampled_shape(
    shape: Sequence[int], source_um: Sequence[float], target_um: Sequence[float]
) -> tuple[int, ...]:
    """The shape scipy's zoom gives when `shape` at `source_um` is resampled to `target_um`."""
    return tuple(
        round(int(n) * (s / t)) for n, s, t in zip(shape, source_um, target_um, strict=True)
    )


def check_resample(
    shape: Sequence[int], source_um: Sequence[float], target_um: Sequence[float], what: str
) -> tuple[int, ...]:
    """Resampling then z-scoring: the input, the zoomed copy and two float32 temporaries."""
    out = resampled_shape(shape, source_um, target_um)
    if min(out) < 1:
        raise UserInputError(
            f"{what}: resampling {'x'.join(map(str, shape))} voxels of "
            f"{'x'.join(f'{v:g}' for v in source_um)} um to the "
            f"{'x'.join(f'{v:g}' for v in target_um)} um grid leaves no voxel along an axis; "
            "the voxel size is implausible for this image: check the file's or --voxel-size's"
        )
    if tuple(out) != tuple(int(n) for n in shape):
        check_memory(
            voxels(shape) * FLOAT_BYTES + 3 * voxels(out) * FLOAT_BYTES,
            f"resampling {what} from {'x'.join(f'{v:g}' for v in source_um)} um to "
            f"{'x'.join(f'{v:g}' for v in target_um)} um voxels "
            f"({'x'.join(map(str, shape))} -> {'x'.join(map(str, out))})",
            "check the voxel size (file metadata or --voxel-size) or crop the image",
        )
    return out


def check_simulation(shape: Sequence[int], workers: int) -> None:
    """Each worker process holds one simulated field (all its densities and optics) at a time."""
    check_memory(
        voxels(shape) * SIMULATE_BYTES_PER_VOXEL * max(1, int(workers)),
        f"simulating fields of {'x'.join(map(str, shape))} voxels with {workers} worker(s)",
        "choose a smaller --shape or fewer --workers",
    )


def check_disk(needed: int, folder: Path, what: str, fix: str) -> None:
    """Refuse to start writing `needed` bytes under `folder` when its disk has less free."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    if needed > free:
        raise UserInputError(
            f"{what} needs about {format_bytes(needed)} of disk space, but only "
            f"{format_bytes(free)} is free under {existing}; {fix}"
        )
