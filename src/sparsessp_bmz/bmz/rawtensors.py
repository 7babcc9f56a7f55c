"""Tensors and axes as a raw rdf.yaml writes them, for the consumer checks of ilastik and QuPath.

Both apps compare the output's geometry with the input's in their own way, and neither reads
the RDF through what bioimageio.spec makes of it, so the checks need the sizes, scales, offsets
and halos exactly as written. This module reads them from format 0.5 (axes as mappings) and,
where that is cheap, 0.4 (axes as a letter string, `shape` and `halo` as lists), and expresses
every axis size as `factor * base + offset`, where `base` is a free (parameterized) input axis
or nothing (a fixed size). Two axes then have the same size for every allowed input exactly when
their linear forms are equal, which is what "the output has the input's shape" means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: 0.4 axis letters -> the 0.5 axis ids bioimageio.spec converts them to.
LETTER_IDS = {"b": "batch", "c": "channel", "t": "time", "i": "index"}
LETTER_TYPES = {"b": "batch", "c": "channel", "t": "time", "i": "index"}
#: 0.5 axis types -> the id an axis of that type has when it does not write one.
DEFAULT_IDS = {"batch": "batch", "channel": "channel", "time": "time", "index": "index"}


@dataclass(frozen=True)
class Param:
    """A parameterized size: min + n * step."""

    min: int
    step: int

    def allows(self, size: int) -> bool:
        if size < self.min:
            return False
        return size == self.min if self.step <= 0 else (size - self.min) % self.step == 0


@dataclass(frozen=True)
class Ref:
    """A size taken from another tensor's axis.

    `factor` None means format 0.5: the factor is `ref scale / this scale`; format 0.4 writes the
    factor (`scale`) itself and doubles the offset.
    """

    tensor_id: str
    axis_id: str
    offset: float
    factor: float | None = None
    offset_written: bool = True


#: A size as written: fixed int, parameterized, referenced, or None (data dependent / unknown).
Size = int | Param | Ref | None


@dataclass(frozen=True)
class RawAxis:
    id: str
    type: str  # batch | channel | space | time | index
    size: Size
    scale: float = 1.0
    halo: int = 0
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def is_space(self) -> bool:
        return self.type == "space"


@dataclass(frozen=True)
class RawTensor:
    id: str
    axes: list[RawAxis]
    processing: list[tuple[str, dict[str, Any]]]  # (op id, kwargs) pre- or postprocessing
    is_input: bool

    def axis(self, axis_id: str) -> RawAxis | None:
        return next((a for a in self.axes if a.id == axis_id), None)

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.axes]

    @property
    def space(self) -> list[RawAxis]:
        return [a for a in self.axes if a.is_space]


@dataclass(frozen=True)
class Linear:
    """size = factor * base + offset; `base` is (tensor id, axis id) of a free axis, or None."""

    base: tuple[str, str] | None
    factor: float
    offset: float

    def same_as(self, other: Linear) -> bool:
        if not math.isclose(self.offset, other.offset, abs_tol=1e-9):
            return False
        if self.base is None or other.base is None:
            return self.base == other.base
        return self.base == other.base and math.isclose(self.factor, other.factor, rel_tol=1e-9)

    def describe(self) -> str:
        if self.base is None:
            return f"fixed {self.offset:g}"
        text = f"{self.factor:g} x {self.base[0]}.{self.base[1]}"
        if self.offset:
            text += f" {'+' if self.offset > 0 else '-'} {abs(self.offset):g}"
        return text


def format_version(rdf: dict[str, Any]) -> tuple[int, ...] | None:
    """`format_version` as a tuple of ints, or None where it is missing or not numeric."""
    value = str(rdf.get("format_version", ""))
    try:
        return tuple(int(part) for part in value.split("."))
    except ValueError:
        return None


def is_v04(rdf: dict[str, Any]) -> bool:
    """Format 0.4 (or older) tensors: axes as letter strings."""
    version = format_version(rdf)
    if version is not None and version[:2] < (0, 5):
        return True
    tensors = (rdf.get("inputs") or []) + (rdf.get("outputs") or [])
    return any(isinstance(t, dict) and isinstance(t.get("axes"), str) for t in tensors)


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _size_v05(axis: dict[str, Any]) -> Size:
    kind = axis.get("type")
    if kind == "batch":
        size = axis.get("size")
        return size if isinstance(size, int) else None
    if kind == "channel":
        names = axis.get("channel_names")
        return len(names) if isinstance(names, list) else None
    size = axis.get("size")
    if isinstance(size, bool):
        return None
    if isinstance(size, int):
        return size
    if isinstance(size, dict):
        if "tensor_id" in size and "axis_id" in size:
            return Ref(
                str(size["tensor_id"]),
                str(size["axis_id"]),
                _number(size.get("offset", 0), 0.0),
                offset_written="offset" in size,
            )
        if "min" in size and "step" in size:
            return Param(int(_number(size["min"], 0)), int(_number(size["step"], 0)))
    return None  # data dependent or unreadable


def _axes_v05(tensor: dict[str, Any]) -> list[RawAxis]:
    axes = []
    for axis in tensor.get("axes") or []:
        if not isinstance(axis, dict):
            continue
        kind = str(axis.get("type", ""))
        axis_id = str(axis.get("id", DEFAULT_IDS.get(kind, "x" if kind == "space" else kind)))
        axes.append(
            RawAxis(
                id=axis_id,
                type=kind,
                size=_size_v05(axis),
                scale=_number(axis.get("scale", 1.0), 1.0),
                halo=int(_number(axis.get("halo", 0), 0)),
                raw=axis,
            )
        )
    return axes


def _letter_id(letter: str) -> str:
    return LETTER_IDS.get(letter, letter)


def _axes_v04(tensor: dict[str, Any], letters_of: dict[str, str]) -> list[RawAxis]:
    letters = str(tensor.get("axes") or "")
    shape = tensor.get("shape")
    halo = tensor.get("halo") or []
    axes = []
    for i, letter in enumerate(letters):
        size: Size = None
        if isinstance(shape, list) and i < len(shape):
            size = int(shape[i])
        elif isinstance(shape, dict) and "min" in shape and "step" in shape:
            minimum, step = int(shape["min"][i]), int(shape["step"][i])
            size = Param(minimum, step) if step > 0 else minimum  # step 0: a fixed size
        elif isinstance(shape, dict) and "reference_tensor" in shape:
            ref = str(shape["reference_tensor"])
            ref_letters = letters_of.get(ref, "")
            scale = (shape.get("scale") or [])[i : i + 1]
            offset = (shape.get("offset") or [])[i : i + 1]
            if i < len(ref_letters) and scale and scale[0] is not None:
                size = Ref(
                    ref,
                    _letter_id(ref_letters[i]),
                    2 * _number(offset[0] if offset else 0, 0.0),  # 0.4: ref * scale + 2 * offset
                    factor=_number(scale[0], 1.0),
                )
        axes.append(
            RawAxis(
                id=_letter_id(letter),
                type=LETTER_TYPES.get(letter, "space"),
                size=size,
                halo=int(_number(halo[i], 0)) if i < len(halo) else 0,
            )
        )
    return axes


def _processing(tensor: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    steps = []
    for step in tensor.get(key) or []:
        if isinstance(step, dict):
            kwargs = step.get("kwargs")
            steps.append(
                (str(step.get("id", step.get("name"))), kwargs if isinstance(kwargs, dict) else {})
            )
    return steps


def read_tensors(rdf: dict[str, Any]) -> tuple[list[RawTensor], list[RawTensor]]:
    """(inputs, outputs) of a raw RDF, format 0.5 or 0.4."""
    raw_inputs = [t for t in rdf.get("inputs") or [] if isinstance(t, dict)]
    raw_outputs = [t for t in rdf.get("outputs") or [] if isinstance(t, dict)]
    v04 = is_v04(rdf)
    letters_of = {
        str(t.get("name", t.get("id"))): str(t.get("axes") or "") for t in raw_inputs + raw_outputs
    }

    def build(tensor: dict[str, Any], is_input: bool) -> RawTensor:
        key = "preprocessing" if is_input else "postprocessing"
        return RawTensor(
            id=str(tensor.get("id", tensor.get("name"))),
            axes=_axes_v04(tensor, letters_of) if v04 else _axes_v05(tensor),
            processing=_processing(tensor, key),
            is_input=is_input,
        )

    return [build(t, True) for t in raw_inputs], [build(t, False) for t in raw_outputs]


def linear_size(
    tensors: list[RawTensor], tensor: RawTensor, axis: RawAxis, depth: int = 0
) -> Linear | None:
    """The axis size as `factor * base + offset`, or None where it cannot be resolved."""
    size = axis.size
    if isinstance(size, int):
        return Linear(None, 0.0, float(size))
    if isinstance(size, Param):
        return Linear((tensor.id, axis.id), 1.0, 0.0)
    if isinstance(size, Ref) and depth < 8:
        ref_tensor = next((t for t in tensors if t.id == size.tensor_id), None)
        ref_axis = ref_tensor.axis(size.axis_id) if ref_tensor else None
        if ref_tensor is None or ref_axis is None:
            return None
        inner = linear_size(tensors, ref_tensor, ref_axis, depth + 1)
        if inner is None:
            return None
        k = size.factor if size.factor is not None else ref_axis.scale / (axis.scale or 1.0)
        return Linear(inner.base, inner.factor * k, inner.offset * k + size.offset)
    return None


def spatial_mismatches(
    tensors: list[RawTensor], source: RawTensor, target: RawTensor
) -> tuple[list[str], list[str]]:
    """Compare every space axis of `target` with the space axis of `source` with the same id.

    Returns (problems, agreements): one line per axis, e.g. "prediction.z = 2 x raw.z, not
    raw.z", and the ids of the axes that agree.
    """
    problems, agreements = [], []
    for axis in target.space:
        counterpart = source.axis(axis.id)
        if counterpart is None or not counterpart.is_space:
            problems.append(f"{target.id}.{axis.id} has no space axis {axis.id!r} in the input")
            continue
        out_size = linear_size(tensors, target, axis)
        in_size = linear_size(tensors, source, counterpart)
        if out_size is None or in_size is None:
            problems.append(f"{target.id}.{axis.id}: size cannot be derived from the input's")
        elif not out_size.same_as(in_size):
            free = in_size == Linear((source.id, counterpart.id), 1.0, 0.0)
            expected = f"{source.id}.{axis.id}" if free else in_size.describe()
            problems.append(f"{target.id}.{axis.id} = {out_size.describe()}, not {expected}")
        else:
            agreements.append(axis.id)
    return problems, agreements


def weights_source(rdf: dict[str, Any], weight_format: str) -> str | None:
    """The `source` of one weights entry as written (0.4 and 0.5 both use plain strings)."""
    entry = (rdf.get("weights") or {}).get(weight_format)
    if not isinstance(entry, dict):
        return None
    source = entry.get("source")
    if isinstance(source, dict):
        source = source.get("source")
    return str(source) if source is not None else None
