"""Checks for what ilastik's Neural Network Classification workflow needs from a package.

ilastik loads the RDF with bioimageio.spec (0.5.9.1, pinned through tiktorch 26.5.0 ->
bioimageio.core 0.10.2), zips only the first weights of (torchscript, pytorch_state_dict) and runs
it in a tiktorch process; its own code then treats the network as a pixel classifier: one input,
one output with a channel axis, the output laid out like the input (lazyflow asks for the input's
axes back) and cropped to the input tile. A deeper output (the standard SparseSSP package: output
z = r x input z) is therefore not refused but silently cut to its first input-depth slices, and
these checks fail it with that reason. Rules read the raw YAML and are named after the ilastik,
tiktorch or bioimageio.spec source file they encode.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Callable
from typing import Any

from sparsessp_bmz.bmz.checks import CheckResult, FileReader, judged
from sparsessp_bmz.bmz.checks import fail as _fail
from sparsessp_bmz.bmz.checks import ok as _ok
from sparsessp_bmz.bmz.rawtensors import (
    Param,
    RawTensor,
    Ref,
    format_version,
    is_v04,
    linear_size,
    read_tensors,
    spatial_mismatches,
    weights_source,
)

# ilastik/ilastik: ilastik/utility/bioimageio_utils.py (SPEC_TO_VIGRA): every axis id is looked up
# in this map (an assert or KeyError otherwise).
ILASTIK_AXIS_IDS = frozenset({"batch", "time", "channel", "z", "y", "x"})
# ilastik/ilastik: ilastik/applets/neuralNetwork/bioimageiodl.py (BIOIMAGEIO_WEIGHTS_PRIORITY).
WEIGHTS_PRIORITY = ("torchscript", "pytorch_state_dict")
# ilastik/tiktorch: setup.py (install_requires and the server-pytorch extra): what a
# `pytorch_state_dict` architecture can import in ilastik's environment besides its own file.
ILASTIK_LIBRARIES = frozenset({"torch", "torchvision", "pytorch3dunet"})
# ilastik/ilastik: ilastik/utility/bioimageio_utils.py (InputAxisUtils.MIN_SIZE_2D/3D).
TILE_TARGET_2D = 512
TILE_TARGET_3D = 64
# bioimage-io/spec-bioimage-io: src/bioimageio/spec/model/v0_5.py at v0.5.9.1 (the
# PreprocessingDescr / PostprocessingDescr unions): the only op ids that version parses.
SPEC_059_PREPROCESSING = frozenset(
    {
        "binarize",
        "clip",
        "ensure_dtype",
        "fixed_zero_mean_unit_variance",
        "scale_linear",
        "scale_range",
        "sigmoid",
        "softmax",
        "zero_mean_unit_variance",
    }
)
SPEC_059_POSTPROCESSING = SPEC_059_PREPROCESSING | {
    "scale_mean_variance",
    "stardist_postprocessing",
}
#: Ops whose statistics bioimageio.core computes from the sample it is given.
PER_SAMPLE_OPS = frozenset({"zero_mean_unit_variance", "scale_range", "scale_mean_variance"})
#: Postprocessing whose result is in 0..1 whatever the network computed.
BOUNDED_OPS = frozenset({"sigmoid", "softmax", "binarize"})
#: Postprocessing that maps values linearly (by fixed numbers or per-sample percentiles).
RESCALING_OPS = frozenset({"scale_linear", "scale_range"})


def check_format_version(rdf: dict[str, Any]) -> CheckResult:
    """bioimage-io/spec-bioimage-io: src/bioimageio/spec/_internal/_description_impl.py
    (get_rd_class_impl: picks the class by major.minor) and _internal/common_nodes.py
    (_ignore_future_patch) plus model/v0_5.py (convert_from_old_format_wo_validation), at
    v0.5.9.1: a 0.5.x RDF with a newer patch (our 0.5.10) loads as 0.5.9, 0.4 and 0.3 are
    converted, any other major.minor falls back to the latest class with a warning."""
    name = "format_version_loads_in_spec_0_5_9"
    raw = rdf.get("format_version")
    version = format_version(rdf)
    if not isinstance(raw, str) or version is None or len(version) < 2:
        return _fail(
            name,
            f"format_version {raw!r} is not a version string: ilastik's bioimageio.spec 0.5.9 "
            "refuses the RDF, so the model cannot be opened",
        )
    if version[:2] in ((0, 3), (0, 4)):
        return _ok(name, f"format {raw} is converted to 0.5.9 on load")
    if version[:2] == (0, 5):
        if version[2:3] and version[2] > 9:
            return _ok(name, f"format {raw} loads as 0.5.9 (future patch versions are accepted)")
        return _ok(name, f"format {raw} is implemented by bioimageio.spec 0.5.9")
    return _fail(
        name,
        f"format {raw} is unknown to bioimageio.spec 0.5.9, which loads it as 0.5.9 with a "
        "warning: fields of the newer format may make ilastik refuse the model",
        severity="warning",
    )


def check_spec_059_fields(rdf: dict[str, Any]) -> CheckResult:
    """bioimage-io/spec-bioimage-io at v0.5.9.1: generic/v0_3.py and model/v0_5.py declare
    `documentation` and `covers` as plain file sources (spec 0.5.11+ writes mappings),
    `channel_names` as Python identifiers (later str), no input `pad` / `output_of` (added after
    0.5.9) and a closed set of processing ids; nodes forbid unknown fields."""
    name = "fields_known_to_spec_0_5_9"
    if is_v04(rdf):
        return _ok(name, "format 0.4 is converted by bioimageio.spec 0.5.9 itself")
    problems = []
    if rdf.get("documentation") is not None and not isinstance(rdf.get("documentation"), str):
        problems.append("`documentation` is a mapping, not a plain string")
    if any(not isinstance(cover, str) for cover in rdf.get("covers") or []):
        problems.append("`covers` holds mappings, not plain strings")
    inputs, outputs = read_tensors(rdf)
    for tensor in inputs + outputs:
        for axis in tensor.axes:
            names = axis.raw.get("channel_names") if axis.type == "channel" else None
            bad = [n for n in names or [] if not str(n).isidentifier() or keyword.iskeyword(str(n))]
            if bad:
                problems.append(f"{tensor.id} channel names {bad} are not Python identifiers")
        allowed = SPEC_059_PREPROCESSING if tensor.is_input else SPEC_059_POSTPROCESSING
        unknown = sorted({op for op, _ in tensor.processing} - allowed)
        if unknown:
            problems.append(f"{tensor.id} uses processing {unknown}")
    for raw in rdf.get("inputs") or []:
        newer = sorted(k for k in ("pad", "output_of") if isinstance(raw, dict) and k in raw)
        if newer:
            problems.append(f"input {raw.get('id')} has {newer}")
    return judged(
        name,
        problems,
        ": bioimageio.spec 0.5.9 (ilastik) rejects the RDF, so ilastik cannot open the model",
        "every field, channel name and processing op is valid in spec 0.5.9",
    )


def check_single_input_output(rdf: dict[str, Any]) -> CheckResult:
    """ilastik/ilastik: ilastik/applets/neuralNetwork/modelStateControl.py
    (_check_model_compatible) refuses anything but one input and one output tensor."""
    name = "one_input_one_output"
    n_in, n_out = len(rdf.get("inputs") or []), len(rdf.get("outputs") or [])
    if n_in == 1 and n_out == 1:
        return _ok(name, "one input and one output tensor")
    return _fail(
        name,
        f"{n_in} input(s) and {n_out} output(s): ilastik refuses the model ('supports only "
        "models with one input/output tensor')",
    )


def check_input_axes(rdf: dict[str, Any]) -> CheckResult:
    """ilastik/ilastik: ilastik/utility/bioimageio_utils.py: SPEC_TO_VIGRA knows only batch,
    time, channel, z, y, x; InputAxisUtils.get_best_tile_shape raises unless the input has 2 or
    3 space axes; InputValidator.check_single_image_min_shape compares the sorted input axis ids
    with the image's, which always include batch and channel (z and time only if the model has
    them), and requires the image's channel count to equal the model's."""
    name = "input_axes"
    inputs, outputs = read_tensors(rdf)
    if not inputs:
        return _fail(name, "no input tensor")
    tensor = inputs[0]
    problems = []
    bad = sorted({a.id for t in inputs + outputs for a in t.axes} - ILASTIK_AXIS_IDS)
    if bad:
        problems.append(f"axis ids {bad} are not among {sorted(ILASTIK_AXIS_IDS)}")
    n_space = len(tensor.space)
    if n_space not in (2, 3):
        problems.append(f"{n_space} space axes (ilastik tiles 2D or 3D inputs only)")
    for needed in ("batch", "channel"):
        if tensor.axis(needed) is None:
            problems.append(f"no {needed} axis (ilastik's images always have one)")
    if problems:
        return _fail(name, f"{tensor.id}: " + "; ".join(problems) + ": ilastik refuses the model")
    channel = tensor.axis("channel")
    channels = channel.size if channel is not None else None
    dims = "".join(a.id for a in tensor.space)
    return _ok(
        name,
        f"{tensor.id} axes {tensor.ids}: images must have {channels} channel(s)"
        + (" and a z axis (3D data)" if "z" in dims else "; z and time are processed slice-wise"),
    )


def check_output_channel_axis(rdf: dict[str, Any]) -> CheckResult:
    """ilastik/ilastik: ilastik/applets/neuralNetwork/modelStateControl.py
    (_check_model_compatible): the output needs a channel axis (its size is the number of
    classes, tiktorchController.BIOModelData.numClasses) and at least two space axes."""
    name = "output_channel_axis"
    _, outputs = read_tensors(rdf)
    if not outputs:
        return _fail(name, "no output tensor")
    tensor = outputs[0]
    problems = []
    channel = tensor.axis("channel")
    if channel is None:
        problems.append("no channel axis")
    if len(tensor.space) < 2:
        problems.append(f"{len(tensor.space)} space axes (at least 2 are needed to show an image)")
    if problems:
        return _fail(name, f"{tensor.id}: " + "; ".join(problems) + ": ilastik refuses the model")
    return _ok(name, f"{tensor.id} has {channel.size} channel(s), shown as that many classes")


def check_output_axes_order(rdf: dict[str, Any]) -> CheckResult:
    """ilastik/ilastik: lazyflow/operators/tiktorch/classifier.py: ModelSession.output_axes
    returns the *input's* axes and `predict` labels the returned array with them
    (reorder_axes), so the output must have the input's axis ids in the input's order."""
    name = "output_axes_like_input"
    inputs, outputs = read_tensors(rdf)
    if not inputs or not outputs:
        return _fail(name, "needs one input and one output")
    tensor_in, tensor_out = inputs[0], outputs[0]
    if tensor_in.ids == tensor_out.ids:
        return _ok(name, f"output axes {tensor_out.ids} match the input's")
    return _fail(
        name,
        f"output axes {tensor_out.ids} differ from input axes {tensor_in.ids}: ilastik reads "
        "the output with the input's axis order, so predictions fail or land on the wrong axes",
    )


def check_output_shape(rdf: dict[str, Any]) -> CheckResult:
    """ilastik/ilastik: lazyflow/operators/tiktorch/operators.py (OpTikTorchClassifierPredict:
    PMaps has the image's shape; `execute` crops the prediction with the input tile's roi) and
    lazyflow/operators/tiktorch/classifier.py (`predict`: r[roiToSlice(*roi)]). ilastik never
    compares the output size with the input's: a larger output is cut to the input frame
    (an r-times deeper stack keeps its first 1/r), a smaller one fails inside the request."""
    name = "output_shape_equals_input"
    inputs, outputs = read_tensors(rdf)
    if not inputs or not outputs:
        return _fail(name, "needs one input and one output")
    tensors = inputs + outputs
    problems, agreements = spatial_mismatches(tensors, inputs[0], outputs[0])
    return judged(
        name,
        problems,
        ": ilastik assumes the output has the input's spatial shape "
        "and silently crops it to the input frame, so the prediction it shows is wrong "
        "(of an r-times deeper output it shows the first 1/r of each tile, stretched r-fold "
        "in z)",
        f"output {', '.join(agreements)} equal the input's for every allowed size",
    )


def _best_tile(tensors: list[RawTensor], tensor: RawTensor) -> dict[str, int] | str:
    """The tile ilastik picks (InputAxisUtils.get_best_tile_shape), or why it cannot.

    Each parameterized axis proposes the n that brings it to the target size, each size
    reference the n that brings it there through its reference (0 when that is fixed); the
    smallest n sizes every axis.
    """
    target = TILE_TARGET_2D if len(tensor.space) == 2 else TILE_TARGET_3D
    size_of: dict[str, Callable[[int], int]] = {}
    factors: list[int] = []
    for axis in tensor.axes:
        if axis.type == "batch":
            continue
        linear = linear_size(tensors, tensor, axis)
        if linear is None:
            return f"{axis.id} has a data-dependent or unresolvable size"
        if linear.base is None:
            size_of[axis.id] = lambda n, value=int(linear.offset): value
            if isinstance(axis.size, Ref):
                factors.append(0)
            continue
        base = tensor.axis(linear.base[1]) if linear.base[0] == tensor.id else None
        if base is None or not isinstance(base.size, Param):
            return f"{axis.id} refers to an axis outside the input"
        param = base.size

        def size(n: int, lin=linear, p=param) -> int:
            return int(lin.factor * (p.min + n * p.step) + lin.offset)

        if isinstance(axis.size, Param):
            factor = max(0, math.ceil((target - param.min) / param.step)) if param.step else 0
        else:
            factor = 0
            while size(factor) < target and factor < 10**4:
                factor += 1
        factors.append(factor)
        size_of[axis.id] = size
    n = min(factors, default=0)
    return {axis_id: size(n) for axis_id, size in size_of.items()}


def check_tile_and_halo(rdf: dict[str, Any]) -> CheckResult:
    """ilastik/ilastik: ilastik/utility/bioimageio_utils.py (InputAxisUtils.get_best_tile_shape:
    the input tile, grown towards 512 (2D) / 64 (3D) by the smallest common n) and
    ilastik/applets/neuralNetwork/opNNclass.py (OpBlockShape.setup_inference: block = tile - 2 *
    output halo per axis; lazyflow OutputAxisUtils.get_halos applies output halos as input
    margins). Every block edge must stay positive."""
    name = "tile_larger_than_halo"
    inputs, outputs = read_tensors(rdf)
    if not inputs or not outputs:
        return _fail(name, "needs one input and one output")
    tensor_in, tensor_out = inputs[0], outputs[0]
    if len(tensor_in.space) not in (2, 3):
        return _fail(name, f"{len(tensor_in.space)} space axes: ilastik computes no tile")
    tile = _best_tile(inputs + outputs, tensor_in)
    if isinstance(tile, str):
        return _fail(name, f"{tensor_in.id}: {tile}: ilastik cannot choose a tile")
    halos = {a.id: a.halo for a in tensor_out.space}
    blocks = {a.id: tile.get(a.id, 0) - 2 * halos.get(a.id, 0) for a in tensor_in.space}
    small = {axis_id: block for axis_id, block in blocks.items() if block < 1}
    described = ", ".join(f"{a}: {tile.get(a)} - 2*{halos.get(a, 0)} = {blocks[a]}" for a in blocks)
    if small:
        return _fail(
            name,
            f"ilastik's tile minus the output halo leaves no voxels ({described}): prediction "
            "blocks would be empty, so ilastik cannot predict",
        )
    return _ok(name, f"ilastik's tile minus halo per axis: {described}")


def check_per_tile_statistics(rdf: dict[str, Any]) -> CheckResult:
    """ilastik/ilastik: lazyflow/operators/tiktorch/operators.py (one prediction request per
    block) and ilastik/tiktorch: tiktorch/converters.py (each request becomes a Sample with no
    dataset statistics) + tiktorch/server/session/backend/supervisor.py
    (BioModelSupervisor.forward -> predict_sample_without_blocking): per-sample statistics of
    pre-/postprocessing are computed on every tile, not on the whole image."""
    name = "statistics_per_tile"
    inputs, outputs = read_tensors(rdf)
    ops = sorted(
        {op for t in inputs[:1] + outputs[:1] for op, _ in t.processing if op in PER_SAMPLE_OPS}
    )
    if not ops:
        return _ok(name, "no per-sample statistics")
    tile = _best_tile(inputs + outputs, inputs[0]) if inputs else "unknown"
    where = (
        ", ".join(f"{k} {v}" for k, v in tile.items() if k != "channel")
        if isinstance(tile, dict)
        else "ilastik's"
    )
    return _fail(
        name,
        f"{ops} are computed on each ilastik tile ({where}, halo included), not over the whole "
        "image: "
        "results differ from bioimageio.core on the whole image and may show tile seams",
        severity="warning",
    )


def _architecture_import(entry: dict[str, Any]) -> str | None:
    """The module a state dict's architecture imports from (None: a file in the package)."""
    architecture = entry.get("architecture")
    if isinstance(architecture, dict):  # format 0.5
        if architecture.get("source") or architecture.get("source_file"):
            return None
        return str(architecture.get("import_from", "")) or None
    if isinstance(architecture, str):  # format 0.4: "module.path:callable" or "file.py:callable"
        target = architecture.rsplit(":", 1)[0]
        return None if target.endswith(".py") else target
    return None


def check_weights(rdf: dict[str, Any], read: FileReader) -> CheckResult:
    """ilastik/ilastik: ilastik/applets/neuralNetwork/bioimageiodl.py: BioImageDownloader zips
    the package with weights_priority_order (torchscript, pytorch_state_dict); bioimageio.spec
    0.5.9 model/v0_4.py (package_weights) keeps only the first present and raises if none is.
    ONNX and TensorFlow weights are never used. A state dict's architecture is imported in
    ilastik's environment (ilastik/tiktorch: setup.py pins what it has)."""
    name = "torchscript_or_state_dict"
    weights = rdf.get("weights") or {}
    present = [fmt for fmt in WEIGHTS_PRIORITY if isinstance(weights.get(fmt), dict)]
    if not present:
        return _fail(
            name,
            f"weights {sorted(weights)} have neither torchscript nor pytorch_state_dict: "
            "ilastik's download fails ('None of the weight formats ... is present')",
        )
    chosen = present[0]
    source = weights_source(rdf, chosen)
    try:
        read(str(source))
    except Exception as err:  # a missing file is the finding
        return _fail(
            name,
            f"ilastik would run the {chosen} weights but {source!r} cannot be read ({err}): "
            "packaging the model for ilastik fails",
        )
    if chosen == "pytorch_state_dict":
        module = _architecture_import(weights[chosen])
        if module and module.split(".")[0] not in ILASTIK_LIBRARIES:
            return _fail(
                name,
                f"ilastik would run the state dict, whose architecture imports {module!r}: that "
                "library is not in ilastik's environment, so the model fails to load (ship "
                "torchscript weights or the architecture as a source file)",
            )
    return _ok(name, f"ilastik runs the {chosen} weights (ONNX/TensorFlow are ignored)")


def check_probability_display(rdf: dict[str, Any]) -> CheckResult:
    """ilastik/ilastik: lazyflow/operators/tiktorch/operators.py (PMaps.meta.drange = (0, 1))
    and ilastik/applets/neuralNetwork/nnClassGui.py (AlphaModulatedLayer(...,
    normalize=(0.0, 1.0))): every output channel is shown as a 0..1 probability overlay, values
    outside are clipped in the display (exports keep the raw floats)."""
    name = "output_in_0_1_for_display"
    _, outputs = read_tensors(rdf)
    if not outputs:
        return _fail(name, "no output tensor")
    ops = [op for op, _ in outputs[0].processing if op != "ensure_dtype"]
    bounded = [
        op
        for op, kwargs in outputs[0].processing
        if op in BOUNDED_OPS
        or (
            op == "clip"
            and float(kwargs.get("min", -math.inf)) >= 0
            and float(kwargs.get("max", math.inf)) <= 1
        )
    ]
    if bounded:
        return _ok(name, f"postprocessing {bounded[-1]} keeps the output in 0..1")
    # sparsessp-bmz's dense-grid and plane packages map the output inside the network (see
    # nets/variants.py DisplayMap) and record the range they map in config.sparsessp
    display = ((rdf.get("config") or {}).get("sparsessp") or {}).get("display_scale")
    if isinstance(display, dict) and {"low", "high"} <= set(display):
        return _ok(
            name,
            f"the network maps [{display['low']:.3g}, {display['high']:.3g}] onto 0..1 for "
            "ilastik's probability display (values outside are shown clipped)",
        )
    rescaled = [op for op in ops if op in RESCALING_OPS]
    if rescaled:
        return _ok(
            name,
            f"postprocessing {rescaled[-1]} maps the output onto roughly 0..1 for ilastik's "
            "probability display (values outside are shown clipped)",
        )
    return _fail(
        name,
        f"no postprocessing maps the output to 0..1 ({ops or 'none'}): ilastik shows it as a "
        "0..1 probability overlay, so values below 0 look empty and above 1 saturated",
        severity="warning",
    )


def run_checks(rdf: dict[str, Any], read: FileReader) -> list[CheckResult]:
    """All ilastik checks of one package, in a fixed order."""
    return [
        check_format_version(rdf),
        check_spec_059_fields(rdf),
        check_single_input_output(rdf),
        check_input_axes(rdf),
        check_output_channel_axis(rdf),
        check_output_axes_order(rdf),
        check_output_shape(rdf),
        check_tile_and_halo(rdf),
        check_per_tile_statistics(rdf),
        check_weights(rdf, read),
        check_probability_display(rdf),
    ]
