"""Checks for what deepImageJ needs beyond what bioimageio.core tests.

deepImageJ parses the RDF itself (not through bioimageio.spec), runs PyTorch up to 2.0 and
onnxruntime 1.13, and computes referenced output sizes its own way (JDLL:
`out = ref * out_scale + 2 * offset`, where bioimageio.spec has `ref * ref_scale / out_scale +
offset`). Each check reads the raw YAML and the weight files, so it works for any package.
"""

from __future__ import annotations

import io
from typing import Any

from sparsessp_bmz.bmz.checks import CheckResult, FileReader
from sparsessp_bmz.bmz.checks import fail as _fail
from sparsessp_bmz.bmz.checks import ok as _ok

#: Preprocessing operations deepImageJ implements.
DEEPIMAGEJ_PREPROCESSING = frozenset(
    {
        "binarize",
        "clip",
        "ensure_dtype",
        "zero_mean_unit_variance",
        "fixed_zero_mean_unit_variance",
        "scale_linear",
        "scale_range",
        "sigmoid",
    }
)
MAX_ONNX_IR_VERSION = 8
MAX_ONNX_OPSET = 17
#: Graph nodes that only scripting produces: tracing records the ops that ran, so Python control
#: flow and calls into compiled TorchScript functions never appear in a traced graph.
SCRIPTED_NODE_KINDS = frozenset({"prim::If", "prim::Loop", "prim::CallFunction"})


def check_identity(rdf: dict[str, Any]) -> CheckResult:
    nickname = ((rdf.get("config") or {}).get("bioimageio") or {}).get("nickname")
    if rdf.get("id") or nickname:
        return _ok("id_or_nickname", f"id={rdf.get('id')!r}, nickname={nickname!r}")
    return _fail("id_or_nickname", "neither `id` nor `config.bioimageio.nickname` is set")


def check_plain_strings(rdf: dict[str, Any]) -> CheckResult:
    problems = []
    documentation = rdf.get("documentation")
    if documentation is not None and not isinstance(documentation, str):
        problems.append("`documentation` is a mapping, not a plain string")
    covers = rdf.get("covers") or []
    if any(not isinstance(cover, str) for cover in covers):
        problems.append("`covers` contains mappings, not plain strings")
    if problems:
        return _fail("plain_documentation_and_covers", "; ".join(problems))
    return _ok("plain_documentation_and_covers", "documentation and covers are plain strings")


def _axes(tensor: dict[str, Any]) -> list[dict[str, Any]]:
    axes = tensor.get("axes") or []
    return [a for a in axes if isinstance(a, dict)]


def check_axis_ids(rdf: dict[str, Any]) -> CheckResult:
    bad = []
    for tensor in (rdf.get("inputs") or []) + (rdf.get("outputs") or []):
        axes = tensor.get("axes")
        if isinstance(axes, str):  # format 0.4: a string of letters
            continue
        for axis in _axes(tensor):
            axis_id = axis.get("id", axis.get("type"))
            if axis_id not in ("batch", "channel") and len(str(axis_id)) != 1:
                bad.append(f"{tensor.get('id')}.{axis_id}")
    if bad:
        return _fail("single_letter_axis_ids", f"axis ids deepImageJ cannot map: {bad}")
    return _ok("single_letter_axis_ids", "spatial axes are single letters")


def check_size_references(rdf: dict[str, Any]) -> CheckResult:
    """Every referenced size must come out the same in bioimageio.spec and in JDLL."""
    scales: dict[tuple[str, str], float] = {}
    for tensor in (rdf.get("inputs") or []) + (rdf.get("outputs") or []):
        for axis in _axes(tensor):
            axis_id = axis.get("id", axis.get("type"))
            scales[str(tensor.get("id")), str(axis_id)] = float(axis.get("scale", 1.0))
    problems, seen = [], 0
    for tensor in rdf.get("outputs") or []:
        for axis in _axes(tensor):
            size = axis.get("size")
            if not isinstance(size, dict) or "tensor_id" not in size:
                continue
            seen += 1
            where = f"{tensor.get('id')}.{axis.get('id')}"
            ref_scale = scales.get((str(size["tensor_id"]), str(size["axis_id"])), 1.0)
            out_scale = float(axis.get("scale", 1.0))
            offset = size.get("offset", 0)
            if offset != 0:
                problems.append(f"{where}: offset {offset} (deepImageJ doubles offsets)")
            if abs(ref_scale - out_scale * out_scale) > 1e-9 * max(1.0, ref_scale):
                problems.append(
                    f"{where}: reference scale {ref_scale:g} != output scale {out_scale:g} "
                    f"squared, so bioimageio.spec gives x{ref_scale / out_scale:g} and "
                    f"deepImageJ x{out_scale:g}"
                )
    if problems:
        return _fail("size_reference_scales", "; ".join(problems))
    return _ok("size_reference_scales", f"{seen} size reference(s) agree in both tools")


def check_preprocessing(rdf: dict[str, Any]) -> CheckResult:
    ops = [
        str(step.get("id", step.get("name")))
        for tensor in rdf.get("inputs") or []
        for step in tensor.get("preprocessing") or []
    ]
    unknown = sorted(set(ops) - DEEPIMAGEJ_PREPROCESSING)
    if unknown:
        return _fail("preprocessing_ops", f"deepImageJ does not implement {unknown}")
    return _ok("preprocessing_ops", f"preprocessing {ops or 'none'} is implemented by deepImageJ")


def check_deepimagej_config(rdf: dict[str, Any]) -> CheckResult:
    section = (rdf.get("config") or {}).get("deepimagej")
    if section is None:
        return _ok("deepimagej_config", "no config.deepimagej section")
    problems = []
    if section.get("allow_tiling") is not True:
        problems.append("allow_tiling is not true")
    if section.get("pyramidal_model") is not False:
        problems.append("pyramidal_model is not false")
    if problems:
        return _fail("deepimagej_config", "; ".join(problems))
    return _ok("deepimagej_config", "allow_tiling: true, pyramidal_model: false")


def _weights_source(rdf: dict[str, Any], fmt: str) -> str | None:
    entry = (rdf.get("weights") or {}).get(fmt)
    if not entry:
        return None
    source = entry.get("source")
    return source.get("source") if isinstance(source, dict) else source


def check_torchscript_traced(rdf: dict[str, Any], read: FileReader) -> CheckResult:
    name = "torchscript_traced"
    source = _weights_source(rdf, "torchscript")
    if source is None:
        return _ok(name, "no TorchScript weights")
    import torch

    try:
        module = torch.jit.load(io.BytesIO(read(source)), map_location="cpu")
        kinds = {node.kind() for node in module.inlined_graph.nodes()}
        kinds |= {
            inner.kind()
            for node in module.inlined_graph.nodes()
            for block in node.blocks()
            for inner in block.nodes()
        }
    except Exception as err:  # any load failure is the finding
        return _fail(name, f"cannot load {source}: {err}")
    scripted = sorted(kinds & SCRIPTED_NODE_KINDS)
    if scripted:
        return _fail(name, f"{source} looks scripted, not traced (graph has {scripted})")
    return _ok(name, f"{source} is a traced graph")


def check_onnx(rdf: dict[str, Any], read: FileReader) -> CheckResult:
    name = "onnx_ir_and_embedded_weights"
    source = _weights_source(rdf, "onnx")
    if source is None:
        return _ok(name, "no ONNX weights")
    entry = rdf["weights"]["onnx"]
    if entry.get("external_data"):
        return _fail(name, f"{source} declares external data; deepImageJ needs one file")
    import onnx

    try:
        model = onnx.load_model_from_string(read(source))
    except Exception as err:
        return _fail(name, f"cannot load {source}: {err}")
    problems = []
    if model.ir_version > MAX_ONNX_IR_VERSION:
        problems.append(f"IR version {model.ir_version} > {MAX_ONNX_IR_VERSION}")
    opsets = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if opsets and max(opsets) > MAX_ONNX_OPSET:
        problems.append(f"opset {max(opsets)} > {MAX_ONNX_OPSET}")
    external = [
        t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    if external:
        problems.append(f"{len(external)} initialiser(s) stored as external data")
    if problems:
        return _fail(name, f"{source}: " + "; ".join(problems))
    return _ok(
        name, f"{source}: IR {model.ir_version}, opset {max(opsets or [0])}, weights embedded"
    )


def run_checks(rdf: dict[str, Any], read: FileReader) -> list[CheckResult]:
    """All deepImageJ checks of one package, in a fixed order."""
    return [
        check_identity(rdf),
        check_plain_strings(rdf),
        check_axis_ids(rdf),
        check_size_references(rdf),
        check_preprocessing(rdf),
        check_deepimagej_config(rdf),
        check_torchscript_traced(rdf, read),
        check_onnx(rdf, read),
    ]
