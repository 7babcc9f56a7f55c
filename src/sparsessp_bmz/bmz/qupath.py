"""Checks for what QuPath's bioimage.io extension needs from a package.

QuPath does not use bioimageio.spec: its own Java reader (qupath-bioimageio-spec, 0.1.0 in
QuPath 0.5, 0.2.x in 0.6 and 0.7) parses rdf.yaml with Gson, and `BioimageIoTools` (QuPath core)
turns the model into a 2D pixel classifier run by Deep Java Library: one input, one output, at
most two space axes, the input channels mapped to image channels, pre- and postprocessing
re-implemented per tile, TorchScript / TensorFlow / ONNX weights only. Where the reader expects a
string it fails on a mapping, where it expects a list it fails on a scalar, and processing ops it
does not know are dropped with only a log line, so these checks read the raw YAML and are named
after the QuPath source file they encode. They target QuPath 0.6/0.7 (format 0.5 support); that
QuPath 0.5 reads format 0.4 only is reported as a warning.
"""

from __future__ import annotations

from typing import Any

from sparsessp_bmz.bmz.checks import CheckResult, FileReader, judged
from sparsessp_bmz.bmz.checks import fail as _fail
from sparsessp_bmz.bmz.checks import ok as _ok
from sparsessp_bmz.bmz.rawtensors import (
    Param,
    RawAxis,
    RawTensor,
    Ref,
    format_version,
    is_v04,
    read_tensors,
    spatial_mismatches,
    weights_source,
)

# qupath/qupath: qupath-core-processing/src/main/java/qupath/opencv/ml/BioimageIoTools.java
# (buildDnnModel): the weights it tries, in order; only these three get a DJL engine.
WEIGHTS_ORDER = ("torchscript", "tensorflow_saved_model_bundle", "onnx")
# BioimageIoTools.buildPatchClassifierParams: preferred tile width and height.
PREFERRED_TILE = 512
# qupath/qupath-bioimageio-spec: src/main/java/qupath/bioimageio/spec/tensor/axes/AxisType.java.
AXIS_LETTERS = frozenset("bicxyzt")
TYPE_LETTERS = {"batch": "b", "channel": "c", "index": "i", "time": "t"}
# qupath/qupath-bioimageio-spec: src/main/java/qupath/bioimageio/spec/Resource.java
# (deserializeResourceFields, doStrict) and Model.java (deserializeModelFields).
REQUIRED_FIELDS = ("format_version", "authors", "description", "documentation", "license", "name")
STRING_FIELDS = (
    "format_version",
    "description",
    "documentation",
    "license",
    "name",
    "id",
    "version",
    "icon",
    "git_repo",
    "download_url",
    "rdf_source",
)
STRING_LIST_FIELDS = ("covers", "tags", "links")
#: Format 0.4 (and 0.5.0, see check_reader_fields) fields Model.java requires.
V04_REQUIRED_FIELDS = ("test_inputs", "test_outputs", "timestamp")
#: Ops whose statistics QuPath computes on each tile instead of on the whole image.
PER_TILE_OPS = frozenset({"zero_mean_unit_variance", "scale_range"})


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _uses_v05_reader(rdf: dict[str, Any]) -> bool:
    """Model.java: `isFormatNewerThan("0.5.0")` (ModuleDescriptor.Version order) picks the 0.5
    code path; 0.5.0 itself is read the 0.4 way."""
    version = format_version(rdf)
    return version is not None and version > (0, 5, 0)


def check_reader_fields(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath-bioimageio-spec: src/main/java/qupath/bioimageio/spec/Resource.java
    (deserializeResourceFields: format_version, authors, description, documentation, license
    and name are required; documentation, license, ... are Gson `String`s, covers/tags/links
    `List<String>`), CiteEntry.java (text/doi/url strings) and Model.java (inputs and weights
    required; for format_version <= 0.5.0 also test_inputs, test_outputs and timestamp)."""
    name = "java_reader_fields"
    problems = []
    missing = [f for f in (*REQUIRED_FIELDS, "inputs", "weights") if f not in rdf]
    if not _uses_v05_reader(rdf):
        missing += [f for f in V04_REQUIRED_FIELDS if f not in rdf]
    if missing:
        problems.append(f"missing {missing}")
    for field in STRING_FIELDS:
        if field in rdf and rdf[field] is not None and not _is_scalar(rdf[field]):
            problems.append(f"`{field}` is a {type(rdf[field]).__name__}, not a plain string")
    for field in STRING_LIST_FIELDS:
        value = rdf.get(field)
        if value is not None and (
            not isinstance(value, list) or not all(_is_scalar(v) for v in value)
        ):
            problems.append(f"`{field}` is not a list of plain strings")
    for entry in rdf.get("cite") or []:
        if not isinstance(entry, dict) or not all(_is_scalar(v) for v in entry.values()):
            problems.append(f"cite entry {entry!r} is not a mapping of strings")
            break
    return judged(
        name,
        problems,
        ": QuPath's rdf.yaml reader throws, so QuPath cannot open the model at all",
        "QuPath's Java reader finds every field it requires, as plain strings",
    )


def check_qupath_05(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath-bioimageio-spec: src/main/java/qupath/bioimageio/spec/BioimageIoSpec.java
    at v0.1.0 (the reader of QuPath 0.5, gradle/libs.versions.toml bioimageIoSpec = 0.1.0)
    reads format 0.4 only: axes as strings and test_inputs/test_outputs/timestamp required.
    QuPath 0.6 and 0.7 use reader 0.2.x with format 0.5 support."""
    name = "readable_by_qupath_0_5"
    if is_v04(rdf):
        return _ok(name, "format 0.4: QuPath 0.5, 0.6 and 0.7 all read it")
    return _fail(
        name,
        f"format {rdf.get('format_version')}: QuPath 0.5 reads only format 0.4 models; use "
        "QuPath 0.6 or newer",
        severity="warning",
    )


def check_single_input_output(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath-extension-bioimageio: src/main/java/qupath/ext/bioimageio/
    BioimageIoCommand.java ('Unable to run models with more than one input or output') and
    qupath/qupath: BioimageIoTools.java (buildPatchClassifierParams: exactly one of each)."""
    name = "one_input_one_output"
    n_in, n_out = len(rdf.get("inputs") or []), len(rdf.get("outputs") or [])
    if n_in == 1 and n_out == 1:
        return _ok(name, "one input and one output tensor")
    return _fail(
        name, f"{n_in} input(s) and {n_out} output(s): QuPath runs single-input/output models only"
    )


def _letter(axis: RawAxis) -> str:
    """The letter QuPath gives an axis (Axes.getAxesString; space axes: their id)."""
    return TYPE_LETTERS.get(axis.type, axis.id.lower())


def _layout(tensor: RawTensor) -> str:
    return "".join(_letter(a) for a in tensor.axes)


def check_axes_readable(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath-bioimageio-spec: src/main/java/qupath/bioimageio/spec/tensor/axes/Axes.java
    (AxesDeserializer: a channel axis needs channel_names, a time axis unit and scale) and
    axes/SpaceAxes.java (a space axis's type is AxisType.valueOf(id): its id must be one of
    b, i, c, x, y, z, t)."""
    name = "axes_readable"
    if is_v04(rdf):
        return _ok(name, "format 0.4 axis letters")
    inputs, outputs = read_tensors(rdf)
    problems = []
    for tensor in inputs + outputs:
        for axis in tensor.axes:
            where = f"{tensor.id}.{axis.id}"
            if axis.type == "space" and (len(axis.id) != 1 or axis.id.lower() not in AXIS_LETTERS):
                problems.append(f"{where}: space axis id is not a single letter x/y/z")
            elif axis.type == "channel" and not isinstance(axis.raw.get("channel_names"), list):
                problems.append(f"{where}: no channel_names")
            elif axis.type == "time" and not ("unit" in axis.raw and "scale" in axis.raw):
                problems.append(f"{where}: time axis without unit and scale")
            elif axis.type not in ("batch", "channel", "space", "time", "index"):
                problems.append(f"{where}: unknown axis type {axis.type!r}")
    return judged(
        name,
        problems,
        ": QuPath's reader fails on these axes, so it cannot open the model",
        "every axis is one QuPath's reader understands",
    )


def check_two_dimensional(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath-extension-bioimageio: BioimageIoCommand.java refuses inputs with more than
    two space axes ('This extension currently only supports 2D models'); qupath/qupath:
    BioimageIoTools.java needs x and y in the input."""
    name = "two_dimensional"
    inputs, _ = read_tensors(rdf)
    if not inputs:
        return _fail(name, "no input tensor")
    space = [a.id for a in inputs[0].space]
    if len(space) > 2:
        return _fail(
            name,
            f"input {inputs[0].id} has {len(space)} space axes {space}: QuPath refuses 3D "
            "models ('only supports 2D models')",
        )
    if sorted(space) != ["x", "y"]:
        return _fail(name, f"input space axes {space} are not y and x: QuPath cannot tile it")
    return _ok(name, "a 2D (y, x) model")


def check_input_layout(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath: BioimageIoTools.java in QuPath 0.6/0.7 reads the channel count at the
    input's `c` index (a missing channel axis throws); qupath/qupath-extension-djl:
    src/main/java/qupath/ext/djl/DjlTools.java (matToNDArray) requires 'HW' in the layout: y
    directly followed by x."""
    name = "input_layout"
    inputs, _ = read_tensors(rdf)
    if not inputs:
        return _fail(name, "no input tensor")
    tensor = inputs[0]
    layout = _layout(tensor)
    problems = []
    if "c" not in layout:
        problems.append("no channel axis")
    if "yx" not in layout:
        problems.append("y is not directly followed by x")
    if problems:
        return _fail(
            name,
            f"input layout {layout!r}: " + "; ".join(problems) + ": QuPath cannot feed image "
            "tiles to the model",
        )
    channel = tensor.axis("channel")
    return _ok(
        name,
        f"input layout {layout!r}; each of its {channel.size if channel else '?'} channel(s) is "
        "mapped to an image channel chosen in QuPath",
    )


def check_output_layout(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath-extension-djl: DjlDnnModel.java converts the output with the *input's*
    layout when the ranks agree; qupath/qupath: BioimageIoTools.java reads the number of
    classes at the input's channel index in QuPath 0.6/0.7 (newer QuPath requires a `c` output
    axis); the classifier output is 2D plus channels, so it needs the input's axes in order."""
    name = "output_layout_like_input"
    inputs, outputs = read_tensors(rdf)
    if not inputs or not outputs:
        return _fail(name, "needs one input and one output")
    layout_in, layout_out = _layout(inputs[0]), _layout(outputs[0])
    if "c" not in layout_out:
        return _fail(
            name,
            f"output layout {layout_out!r} has no channel axis: QuPath cannot tell the number "
            "of classes of the pixel classifier",
        )
    if layout_in != layout_out:
        return _fail(
            name,
            f"output layout {layout_out!r} differs from input layout {layout_in!r}: QuPath reads "
            "the output with the input's layout, so classes or pixels end up on the wrong axes",
        )
    channel = outputs[0].axis("channel")
    return _ok(
        name,
        f"output layout {layout_out!r}; {channel.size if channel else '?'} float channel(s) "
        "become pixel-classifier outputs (type probability)",
    )


def check_output_plane(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath: qupath-core-processing/src/main/java/qupath/opencv/ops/ImageOps.java
    (DnnOp/PaddedOp: the prediction of a tile is cropped by the input padding and stands for
    that input tile, so the output's y/x must be the input's)."""
    name = "output_plane_equals_input"
    inputs, outputs = read_tensors(rdf)
    if not inputs or not outputs:
        return _fail(name, "needs one input and one output")
    problems, agreements = spatial_mismatches(inputs + outputs, inputs[0], outputs[0])
    return judged(
        name,
        problems,
        ": QuPath places each output tile on its input tile, so a "
        "differently sized output is misplaced or fails",
        f"output {', '.join(agreements)} equal the input's",
    )


def _qupath_tile(minimum: int) -> int:
    """BioimageIoTools.updateLength(min, step, 512) with step = min (it passes getShapeMin()
    as the step): the largest multiple of min not above 512, or min itself."""
    if minimum >= PREFERRED_TILE or minimum <= 0:
        return minimum
    return minimum + ((PREFERRED_TILE - minimum) // minimum) * minimum


def check_tile_size(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath: BioimageIoTools.java (buildPatchClassifierParams: `shapeStep =
    getShapeMin()`, then updateLength towards 512) in QuPath 0.5-0.7: the tile is a multiple of
    the minimum size, which the model must accept; with size references in the output QuPath
    offers no other tile size (BioimageIoPane)."""
    name = "qupath_tile_size_valid"
    inputs, _ = read_tensors(rdf)
    if not inputs:
        return _fail(name, "no input tensor")
    problems, chosen = [], []
    for axis_id in ("y", "x"):
        axis = inputs[0].axis(axis_id)
        if axis is None:
            continue
        if isinstance(axis.size, int):
            tile = _qupath_tile(axis.size)
            valid = tile == axis.size
            allowed = f"fixed {axis.size}"
        elif isinstance(axis.size, Param):
            tile = _qupath_tile(axis.size.min)
            valid = axis.size.allows(tile)
            allowed = f"min {axis.size.min} step {axis.size.step}"
        else:
            chosen.append(f"{axis_id}: not checked (size {type(axis.size).__name__})")
            continue
        chosen.append(f"{axis_id} {tile}")
        if not valid:
            problems.append(f"{axis_id}: QuPath picks {tile}, the model allows {allowed}")
    return judged(
        name,
        problems,
        ": QuPath feeds tiles of a size the model does not accept, so prediction fails",
        f"QuPath's tile ({', '.join(chosen)}) is a size the model accepts",
    )


def check_weights(rdf: dict[str, Any], read: FileReader) -> CheckResult:
    """qupath/qupath: BioimageIoTools.java (buildDnnModel): tries torchscript, then
    tensorflow_saved_model_bundle, then onnx (state dict, Keras and TF.js have no engine), skips
    http(s) sources and zipped weights that are not unzipped next to rdf.yaml;
    qupath-extension-bioimageio BioimageIoCommand.java opens an rdf.yaml, not a zip."""
    name = "torchscript_tensorflow_or_onnx"
    skipped = []
    for fmt in WEIGHTS_ORDER:
        source = weights_source(rdf, fmt)
        if source is None:
            continue
        if source.lower().startswith(("http:", "https:")):
            skipped.append(f"{fmt}: remote source")
            continue
        if source.lower().endswith(".zip"):
            skipped.append(f"{fmt}: zipped weights must be unzipped by hand")
            continue
        try:
            read(source)
        except Exception as err:  # a missing file is the finding
            skipped.append(f"{fmt}: {source!r} cannot be read ({err})")
            continue
        note = f" (skipped: {'; '.join(skipped)})" if skipped else ""
        return _ok(
            name,
            f"QuPath runs the {fmt} weights {source!r} through Deep Java Library{note}; unzip "
            "the package and open its rdf.yaml",
        )
    present = sorted((rdf.get("weights") or {}).keys())
    detail = f" ({'; '.join(skipped)})" if skipped else ""
    return _fail(
        name,
        f"weights {present} give QuPath no usable torchscript, tensorflow_saved_model_bundle or "
        f"onnx file{detail}: QuPath cannot run the model",
    )


def _axes_letters(kwargs: dict[str, Any]) -> str | None:
    axes = kwargs.get("axes")
    if isinstance(axes, str):
        return axes.lower()
    if isinstance(axes, list):
        return "".join(str(a)[:1].lower() for a in axes)
    return None


def _op_findings(op: str, kwargs: dict[str, Any]) -> tuple[str | None, str | None]:
    """(error, note) for one processing step as QuPath reads and runs it.

    qupath/qupath-bioimageio-spec: src/main/java/qupath/bioimageio/spec/tensor/Processing.java
    (ProcessingDeserializer) and qupath/qupath: BioimageIoTools.java (transformToOp).
    """
    if op == "sigmoid":
        return None, None
    if op == "clip":
        return None, None
    if op == "binarize":
        threshold = kwargs.get("threshold")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            return "binarize needs one scalar `threshold` (QuPath's reader fails otherwise)", None
        return None, None
    if op == "scale_linear":
        lists = [isinstance(kwargs.get(k), list) for k in ("gain", "offset")]
        if not all(lists):
            return (
                "scale_linear needs `gain` and `offset` written as lists (QuPath's reader "
                "fails on a scalar and crashes on a missing one; write `axis: channel, gain: [g], "
                "offset: [o]`)",
                None,
            )
        return None, None
    if op in ("zero_mean_unit_variance", "scale_range"):
        letters = _axes_letters(kwargs)
        if letters is None:
            return f"{op} without `axes` (QuPath's transformToOp throws on missing axes)", None
        if op == "scale_range" and not ("min_percentile" in kwargs and "max_percentile" in kwargs):
            return (
                "scale_range must write min_percentile and max_percentile (QuPath's defaults "
                "are swapped: min 100, max 0)",
                None,
            )
        mode = str(kwargs.get("mode", "per_sample"))
        note = None
        if mode == "per_dataset":
            note = f"{op} per_dataset is run per tile"
        if op == "zero_mean_unit_variance" and sorted(letters) not in (
            sorted("xy"),
            sorted("xyc"),
        ):
            note = f"{op} over {letters!r} is run over {'xy' if 'c' not in letters else 'xyc'}"
        return None, note
    if op == "ensure_dtype":
        dtype = str(kwargs.get("dtype", ""))
        if dtype.startswith("float"):
            return None, None  # dropped, but QuPath computes in float32 anyway
        return None, f"ensure_dtype {dtype} is dropped (QuPath keeps float32)"
    return f"{op} is unknown to QuPath and silently dropped, so it computes something else", None


def _check_processing(rdf: dict[str, Any], inputs_side: bool) -> CheckResult:
    which = "preprocessing" if inputs_side else "postprocessing"
    name = f"{which}_ops"
    inputs, outputs = read_tensors(rdf)
    tensors = inputs if inputs_side else outputs
    if not tensors:
        return _fail(name, f"no {'input' if inputs_side else 'output'} tensor")
    errors, notes = [], []
    for op, kwargs in tensors[0].processing:
        error, note = _op_findings(op, kwargs)
        if error:
            errors.append(error)
        if note:
            notes.append(note)
    ops = [op for op, _ in tensors[0].processing]
    if errors:
        return _fail(name, "; ".join(errors))
    text = f"{which} {ops or 'none'} is implemented by QuPath"
    return _ok(name, text + (f" ({'; '.join(notes)})" if notes else ""))


def check_preprocessing(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath-bioimageio-spec: tensor/Processing.java and qupath/qupath:
    BioimageIoTools.java (transformToOp): binarize, clip, scale_linear, scale_range, sigmoid,
    zero_mean_unit_variance (per sample, or fixed mean/std in format 0.4); anything else
    (fixed_zero_mean_unit_variance, scale_mean_variance, softmax, ...) is dropped."""
    return _check_processing(rdf, inputs_side=True)


def check_postprocessing(rdf: dict[str, Any]) -> CheckResult:
    """Same source as check_preprocessing, applied to the output."""
    return _check_processing(rdf, inputs_side=False)


def check_per_tile_statistics(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath: BioimageIoTools.java (transformToOp -> ImageOps.Normalize): per-sample
    statistics are computed on each (512 px) tile, not on the whole image as in
    bioimageio.core."""
    name = "statistics_per_tile"
    inputs, outputs = read_tensors(rdf)
    ops = sorted(
        {op for t in inputs[:1] + outputs[:1] for op, _ in t.processing if op in PER_TILE_OPS}
    )
    if not ops:
        return _ok(name, "no per-sample statistics")
    return _fail(
        name,
        f"{ops} are computed per tile in QuPath, not over the whole image: results differ from "
        "bioimageio.core and may show tile seams",
        severity="warning",
    )


def check_halo(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath-bioimageio-spec: tensor/axes/Axes.java (AxesDeserializer builds plain
    SpaceAxis objects, never WithHalo) and tensor/OutputTensor.java (getHalo): a format 0.5
    output halo reads as 0, so QuPath tiles without cropping the unreliable border."""
    name = "halo_used"
    if is_v04(rdf):
        return _ok(name, "format 0.4 halo lists are read")
    _, outputs = read_tensors(rdf)
    halos = {a.id: a.halo for t in outputs[:1] for a in t.axes if a.halo}
    if not halos:
        return _ok(name, "no output halo")
    return _fail(
        name,
        f"output halo {halos} is ignored by QuPath's reader: tiles are stitched uncropped, so "
        "tile borders may show seams",
        severity="warning",
    )


def check_reference_offsets(rdf: dict[str, Any]) -> CheckResult:
    """qupath/qupath-bioimageio-spec: tensor/sizes/Size.java (deserializeSize): a size reference
    without `offset` gets offset 1 in QuPath (0 in the spec)."""
    name = "size_reference_offsets_written"
    if is_v04(rdf):
        return _ok(name, "format 0.4 has no size references")
    inputs, outputs = read_tensors(rdf)
    missing = [
        f"{t.id}.{a.id}"
        for t in inputs + outputs
        for a in t.axes
        if isinstance(a.size, Ref) and not a.size.offset_written
    ]
    if missing:
        return _fail(
            name,
            f"size references {missing} omit `offset`: QuPath reads it as 1, so its output "
            "shapes are one pixel off",
            severity="warning",
        )
    return _ok(name, "every size reference writes its offset")


def run_checks(rdf: dict[str, Any], read: FileReader) -> list[CheckResult]:
    """All QuPath checks of one package, in a fixed order."""
    return [
        check_reader_fields(rdf),
        check_qupath_05(rdf),
        check_single_input_output(rdf),
        check_axes_readable(rdf),
        check_two_dimensional(rdf),
        check_input_layout(rdf),
        check_output_layout(rdf),
        check_output_plane(rdf),
        check_tile_size(rdf),
        check_weights(rdf, read),
        check_preprocessing(rdf),
        check_postprocessing(rdf),
        check_per_tile_statistics(rdf),
        check_halo(rdf),
        check_reference_offsets(rdf),
    ]
