"""ilastik and QuPath checks on small hand-written RDFs of the three package variants."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sparsessp_bmz.bmz import ilastik, qupath
from sparsessp_bmz.bmz.checks import CheckResult

PACKAGE_FILES = {
    "README.md",
    "cover.png",
    "net.py",
    "weights.pt",
    "weights_torchscript.pt",
    "weights.onnx",
}


def read(name: str) -> bytes:
    if name not in PACKAGE_FILES:
        raise FileNotFoundError(name)
    return b"bytes"


def _ref(axis: str, offset: int = 0) -> dict[str, Any]:
    return {"tensor_id": "raw", "axis_id": axis, "offset": offset}


def make_rdf(variant: str = "standard", ratio: int = 2) -> dict[str, Any]:
    """A raw rdf.yaml dict shaped like our packages.

    standard: sparse (batch, channel, z, y, x) in, output z = r x input z (input z scale r*r,
    output z scale r); dense: output z/y/x the input's; plane: (batch, channel, y, x).
    """
    xy = {"min": 32, "step": 16}
    inputs = [{"type": "batch"}, {"type": "channel", "channel_names": ["transmitted_light"]}]
    outputs = [{"type": "batch"}, {"type": "channel", "channel_names": ["dna"]}]
    norm_axes = ["channel", "y", "x"]
    if variant == "standard":
        inputs.append({"type": "space", "id": "z", "size": {"min": 4, "step": 4}, "scale": 4.0})
        outputs.append({"type": "space", "id": "z", "size": _ref("z"), "scale": float(ratio)})
        norm_axes.insert(1, "z")
    elif variant == "dense":
        inputs.append({"type": "space", "id": "z", "size": {"min": 8, "step": 8}})
        outputs.append({"type": "space", "id": "z", "size": _ref("z")})
        norm_axes.insert(1, "z")
    for axis in ("y", "x"):
        inputs.append({"type": "space", "id": axis, "size": dict(xy)})
        outputs.append({"type": "space", "id": axis, "size": _ref(axis), "halo": 8})
    postprocessing = []
    if variant != "standard":
        postprocessing.append(
            {"id": "scale_linear", "kwargs": {"axis": "channel", "gain": [0.2], "offset": [0.2]}}
        )
    return {
        "format_version": "0.5.10",
        "type": "model",
        "id": f"sparsessp-dna-{variant}",
        "name": f"SparseSSP dna {variant}",
        "description": "Predicts fluorescence from transmitted light.",
        "documentation": "README.md",
        "covers": ["cover.png"],
        "authors": [{"name": "A. Author"}],
        "cite": [{"text": "SparseSSP", "doi": "10.48550/arXiv.2407.02159"}],
        "license": "MIT",
        "tags": ["3d"],
        "inputs": [
            {
                "id": "raw",
                "axes": inputs,
                "test_tensor": {"source": "test_input.npy", "sha256": "0" * 64},
                "preprocessing": [
                    {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                    {"id": "zero_mean_unit_variance", "kwargs": {"axes": norm_axes}},
                ],
            }
        ],
        "outputs": [
            {
                "id": "prediction",
                "axes": outputs,
                "test_tensor": {"source": "test_output.npy", "sha256": "0" * 64},
                "postprocessing": postprocessing,
            }
        ],
        "weights": {
            "onnx": {"source": "weights.onnx", "opset_version": 17},
            "pytorch_state_dict": {
                "source": "weights.pt",
                "architecture": {"source": "net.py", "callable": "build", "kwargs": {}},
                "pytorch_version": "2.5.1",
            },
            "torchscript": {"source": "weights_torchscript.pt", "pytorch_version": "2.5.1"},
        },
    }


def make_rdf_v04(output_scale: float = 1.0) -> dict[str, Any]:
    """A format 0.4 plane package (axes as letters, shapes as lists)."""
    return {
        "format_version": "0.4.10",
        "type": "model",
        "name": "plane v04",
        "description": "d",
        "documentation": "README.md",
        "covers": ["cover.png"],
        "authors": [{"name": "A. Author"}],
        "cite": [{"text": "t", "doi": "10.1234/x"}],
        "license": "MIT",
        "timestamp": "2024-07-02T00:00:00",
        "test_inputs": ["test_input.npy"],
        "test_outputs": ["test_output.npy"],
        "inputs": [
            {
                "name": "raw",
                "axes": "bcyx",
                "data_type": "float32",
                "shape": {"min": [1, 1, 32, 32], "step": [0, 0, 16, 16]},
                "preprocessing": [
                    {
                        "name": "zero_mean_unit_variance",
                        "kwargs": {"mode": "per_sample", "axes": "cyx"},
                    }
                ],
            }
        ],
        "outputs": [
            {
                "name": "prediction",
                "axes": "bcyx",
                "data_type": "float32",
                "shape": {
                    "reference_tensor": "raw",
                    "scale": [1.0, 1.0, output_scale, output_scale],
                    "offset": [0, 0, 0, 0],
                },
                "halo": [0, 0, 8, 8],
                "postprocessing": [{"name": "sigmoid"}],
            }
        ],
        "weights": {"torchscript": {"source": "weights_torchscript.pt"}},
    }


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def blocking(results: list[CheckResult]) -> set[str]:
    return {r.name for r in results if r.blocking}


def warnings(results: list[CheckResult]) -> set[str]:
    return {r.name for r in results if not r.passed and not r.blocking}


# --- the three variants ---------------------------------------------------------------------


def test_ilastik_fails_the_standard_package_because_the_output_is_deeper():
    results = ilastik.run_checks(make_rdf("standard"), read)
    assert blocking(results) == {"output_shape_equals_input"}
    message = by_name(results)["output_shape_equals_input"].message
    assert "prediction.z = 2 x raw.z, not raw.z" in message
    assert "crops" in message


def test_ilastik_accepts_the_dense_grid_package():
    results = ilastik.run_checks(make_rdf("dense"), read)
    assert blocking(results) == set()
    checks = by_name(results)
    assert "z, y, x" in checks["output_shape_equals_input"].message
    assert "torchscript" in checks["torchscript_or_state_dict"].message
    assert checks["output_in_0_1_for_display"].passed  # the display scale_linear


def test_ilastik_accepts_the_plane_package():
    assert blocking(ilastik.run_checks(make_rdf("plane"), read)) == set()


def test_qupath_accepts_only_the_plane_package():
    plane = qupath.run_checks(make_rdf("plane"), read)
    assert blocking(plane) == set()
    # per-tile normalisation, the ignored halo and QuPath 0.5's 0.4-only reader are warnings
    assert warnings(plane) == {"readable_by_qupath_0_5", "statistics_per_tile", "halo_used"}
    for variant in ("standard", "dense"):
        results = qupath.run_checks(make_rdf(variant), read)
        assert "two_dimensional" in blocking(results)
        assert "3 space axes" in by_name(results)["two_dimensional"].message


def test_checks_come_in_a_fixed_order_with_unique_names():
    for module in (ilastik, qupath):
        names = [r.name for r in module.run_checks(make_rdf("dense"), read)]
        assert names == [r.name for r in module.run_checks(make_rdf("plane"), read)]
        assert len(names) == len(set(names))


# --- ilastik rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "passed", "severity"),
    [("0.5.10", True, "error"), ("0.5.3", True, "error"), ("0.4.10", True, "error"),
     ("0.6.0", False, "warning"), ("latest", False, "error")],
)  # fmt: skip
def test_ilastik_format_versions(version: str, passed: bool, severity: str):
    rdf = make_rdf("dense")
    rdf["format_version"] = version
    result = ilastik.check_format_version(rdf)
    assert result.passed is passed
    assert result.severity == severity


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r.update(documentation={"source": "README.md"}), "documentation"),
        (lambda r: r.update(covers=[{"source": "cover.png"}]), "covers"),
        (lambda r: r["outputs"][0]["axes"][1].update(channel_names=["dna signal"]), "identifier"),
        (lambda r: r["inputs"][0].update(pad={"mode": "reflect"}), "pad"),
        (lambda r: r["outputs"][0]["postprocessing"].append({"id": "custom"}), "custom"),
    ],
)
def test_ilastik_fields_spec_0_5_9_rejects(mutate, needle: str):
    rdf = make_rdf("dense")
    mutate(rdf)
    result = ilastik.check_spec_059_fields(rdf)
    assert not result.passed and needle in result.message and "cannot open" in result.message


def test_ilastik_needs_one_input_and_one_output():
    rdf = make_rdf("dense")
    rdf["outputs"].append(copy.deepcopy(rdf["outputs"][0]))
    result = ilastik.check_single_input_output(rdf)
    assert not result.passed and "2 output(s)" in result.message


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda axes: axes.pop(0), "no batch axis"),
        (lambda axes: axes[2].update(id="depth"), "'depth'"),
        (lambda axes: axes.insert(2, {"type": "index", "size": 3}), "'index'"),
    ],
)
def test_ilastik_input_axes(mutate, needle: str):
    rdf = make_rdf("dense")
    mutate(rdf["inputs"][0]["axes"])
    result = ilastik.check_input_axes(rdf)
    assert not result.passed and needle in result.message


def test_ilastik_input_axes_tell_the_data_it_needs():
    message = ilastik.check_input_axes(make_rdf("dense")).message
    assert "1 channel(s)" in message and "z axis" in message


def test_ilastik_output_needs_channel_axis_and_the_input_axis_order():
    rdf = make_rdf("dense")
    del rdf["outputs"][0]["axes"][1]
    assert "no channel axis" in ilastik.check_output_channel_axis(rdf).message
    rdf = make_rdf("dense")
    axes = rdf["outputs"][0]["axes"]
    axes.append(axes.pop(1))  # channel last
    result = ilastik.check_output_axes_order(rdf)
    assert not result.passed and "input's axis order" in result.message


@pytest.mark.parametrize(
    ("in_size", "in_scale", "out_size", "out_scale", "same"),
    [
        ({"min": 8, "step": 8}, 2.0, _ref("z"), 2.0, True),  # equal scales cancel
        ({"min": 8, "step": 8}, 1.0, _ref("z", 2), 1.0, False),  # offset
        ({"min": 8, "step": 8}, 1.0, _ref("y"), 1.0, False),  # another axis
        ({"min": 8, "step": 8}, 1.0, 8, 1.0, False),  # fixed vs parameterized
        (16, 1.0, 16, 1.0, True),  # fixed sizes
        (16, 1.0, _ref("z"), 1.0, True),
        (16, 4.0, _ref("z"), 2.0, False),  # 2 x
    ],
)
def test_output_shape_from_references_scales_and_offsets(
    in_size, in_scale: float, out_size, out_scale: float, same: bool
):
    rdf = make_rdf("dense")
    rdf["inputs"][0]["axes"][2].update(size=in_size, scale=in_scale)
    rdf["outputs"][0]["axes"][2].update(size=out_size, scale=out_scale)
    assert ilastik.check_output_shape(rdf).passed is same
    assert qupath.check_output_plane(rdf).passed is same


def test_ilastik_halo_larger_than_its_tile_is_caught():
    rdf = make_rdf("dense")
    rdf["outputs"][0]["axes"][3]["halo"] = 40  # y tile 64 - 2 * 40 < 0
    result = ilastik.check_tile_and_halo(rdf)
    assert not result.passed and "y: 64 - 2*40 = -16" in result.message


def test_ilastik_tile_follows_get_best_tile_shape():
    message = ilastik.check_tile_and_halo(make_rdf("plane")).message
    assert "y: 512 - 2*8 = 496" in message  # 2D target 512
    message = ilastik.check_tile_and_halo(make_rdf("dense")).message
    # the smallest n over the axes (y: 32 + 2*16 = 64) also sets z: 8 + 2*8 = 24
    assert "z: 24 - 2*0 = 24" in message and "y: 64 - 2*8 = 48" in message


@pytest.mark.parametrize(
    ("weights", "passed", "needle"),
    [
        ({"onnx": {"source": "weights.onnx"}}, False, "neither torchscript"),
        (
            {
                "pytorch_state_dict": {
                    "source": "weights.pt",
                    "architecture": {"import_from": "sparsessp_bmz.nets", "callable": "b"},
                }
            },
            False,
            "sparsessp_bmz.nets",
        ),
        (
            {
                "pytorch_state_dict": {
                    "source": "weights.pt",
                    "architecture": {"source": "net.py", "callable": "b"},
                }
            },
            True,
            "pytorch_state_dict",
        ),
        ({"torchscript": {"source": "missing.pt"}}, False, "missing.pt"),
    ],
)
def test_ilastik_weights(weights: dict, passed: bool, needle: str):
    rdf = make_rdf("dense")
    rdf["weights"] = weights
    result = ilastik.check_weights(rdf, read)
    assert result.passed is passed and needle in result.message


def test_ilastik_warns_when_nothing_maps_the_output_to_0_1():
    standard = ilastik.check_probability_display(make_rdf("standard"))
    assert not standard.passed and not standard.blocking and "0..1" in standard.message
    rdf = make_rdf("standard")
    rdf["outputs"][0]["postprocessing"] = [{"id": "sigmoid"}]
    assert ilastik.check_probability_display(rdf).passed


def test_ilastik_warns_about_per_tile_statistics():
    result = ilastik.check_per_tile_statistics(make_rdf("dense"))
    assert result.severity == "warning" and not result.passed
    assert "zero_mean_unit_variance" in result.message and "z 24, y 64, x 64" in result.message


# --- QuPath rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r.update(documentation={"source": "README.md", "sha256": "0"}), "documentation"),
        (lambda r: r.update(license={"id": "MIT"}), "license"),
        (lambda r: r.update(covers=[{"source": "cover.png"}]), "covers"),
        (lambda r: r.pop("authors"), "authors"),
        (lambda r: r.update(format_version="0.5.0"), "test_inputs"),  # 0.5.0 is read as 0.4
    ],
)
def test_qupath_java_reader_fields(mutate, needle: str):
    rdf = make_rdf("plane")
    mutate(rdf)
    result = qupath.check_reader_fields(rdf)
    assert not result.passed and needle in result.message and "cannot open" in result.message


def test_qupath_axes_readable():
    rdf = make_rdf("plane")
    rdf["inputs"][0]["axes"][2]["id"] = "row"
    rdf["outputs"][0]["axes"][2]["size"]["axis_id"] = "row"
    result = qupath.check_axes_readable(rdf)
    assert not result.passed and "raw.row" in result.message


@pytest.mark.parametrize(
    ("order", "check", "needle"),
    [
        ([0, 1, 3, 2], "check_input_layout", "y is not directly followed by x"),
        ([0, 2, 3, 1], "check_output_layout", "differs from input layout"),
    ],
)
def test_qupath_layouts(order: list[int], check: str, needle: str):
    rdf = make_rdf("plane")
    tensor = rdf["inputs" if check == "check_input_layout" else "outputs"][0]
    tensor["axes"] = [tensor["axes"][i] for i in order]
    result = getattr(qupath, check)(rdf)
    assert not result.passed and needle in result.message


@pytest.mark.parametrize(
    ("size", "passed"),
    [
        ({"min": 32, "step": 16}, True),  # 512
        ({"min": 24, "step": 16}, True),  # 504
        ({"min": 48, "step": 32}, False),  # 480 = 48 + 13.5 x 32
        (200, False),  # fixed 200 -> 400
        (512, True),
    ],
)
def test_qupath_tile_is_a_multiple_of_the_minimum(size, passed: bool):
    rdf = make_rdf("plane")
    rdf["inputs"][0]["axes"][2]["size"] = size
    result = qupath.check_tile_size(rdf)
    assert result.passed is passed
    if not passed:
        assert "QuPath picks" in result.message


def test_qupath_weights_order_and_missing_files():
    rdf = make_rdf("plane")
    assert "torchscript" in qupath.check_weights(rdf, read).message
    rdf["weights"]["torchscript"]["source"] = "gone.pt"
    result = qupath.check_weights(rdf, read)
    assert result.passed and "onnx" in result.message and "gone.pt" in result.message
    rdf["weights"] = {"pytorch_state_dict": rdf["weights"]["pytorch_state_dict"]}
    result = qupath.check_weights(rdf, read)
    assert not result.passed and "cannot run" in result.message


@pytest.mark.parametrize(
    ("side", "step", "needle"),
    [
        ("post", {"id": "scale_linear", "kwargs": {"gain": 0.2, "offset": 0.1}}, "as lists"),
        (
            "pre",
            {"id": "fixed_zero_mean_unit_variance", "kwargs": {"mean": 1, "std": 2}},
            "dropped",
        ),
        ("pre", {"id": "zero_mean_unit_variance", "kwargs": {}}, "without `axes`"),
        ("pre", {"id": "scale_range", "kwargs": {"axes": ["y", "x"]}}, "swapped"),
        ("post", {"id": "binarize", "kwargs": {"threshold": [0.5], "axis": "channel"}}, "scalar"),
        ("post", {"id": "softmax", "kwargs": {"axis": "channel"}}, "softmax is unknown"),
    ],
)
def test_qupath_processing_it_cannot_run(side: str, step: dict, needle: str):
    rdf = make_rdf("plane")
    key = "preprocessing" if side == "pre" else "postprocessing"
    tensor = rdf["inputs" if side == "pre" else "outputs"][0]
    tensor[key] = [step]
    check = qupath.check_preprocessing if side == "pre" else qupath.check_postprocessing
    result = check(rdf)
    assert not result.passed and needle in result.message


def test_qupath_processing_it_runs():
    rdf = make_rdf("plane")
    rdf["outputs"][0]["postprocessing"] += [
        {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
        {"id": "sigmoid"},
        {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
    ]
    assert qupath.check_preprocessing(rdf).passed
    assert qupath.check_postprocessing(rdf).passed


def test_qupath_reference_without_offset_is_a_warning():
    rdf = make_rdf("plane")
    del rdf["outputs"][0]["axes"][2]["size"]["offset"]
    result = qupath.check_reference_offsets(rdf)
    assert not result.passed and not result.blocking and "prediction.y" in result.message


# --- format 0.4 -----------------------------------------------------------------------------


def test_format_04_plane_package():
    rdf = make_rdf_v04()
    assert blocking(ilastik.run_checks(rdf, read)) == set()
    results = qupath.run_checks(rdf, read)
    assert blocking(results) == set()
    assert by_name(results)["readable_by_qupath_0_5"].passed
    assert by_name(results)["halo_used"].passed


def test_format_04_scaled_output_is_caught():
    rdf = make_rdf_v04(output_scale=2.0)
    message = ilastik.check_output_shape(rdf).message
    assert "prediction.y = 2 x raw.y" in message
    assert not qupath.check_output_plane(rdf).passed
    del rdf["test_inputs"]
    assert "test_inputs" in qupath.check_reader_fields(rdf).message
