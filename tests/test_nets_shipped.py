"""The network source a package ships: one generated file, importing torch and the standard library
only, that rebuilds every network the project trains bit for bit, in every package variant, where
this project is not installed."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import sparsessp_bmz
from sparsessp_bmz.bmz import netsource
from sparsessp_bmz.bmz.netsource import (
    ARCHITECTURE_CALLABLE,
    SHIPPED_FILE,
    NetSourceError,
    bundle_modules,
    network_source,
    write_network_source,
)
from sparsessp_bmz.nets import build_net, build_net_from_fields, build_package_net
from sparsessp_bmz.nets.complexity import all_valid_specs
from sparsessp_bmz.nets.geometry import NetGeometry
from sparsessp_bmz.nets.variants import DenseGridNet, PlaneNet, wrap_variant
from sparsessp_bmz.spec import ModelSpec

TINY = {"width": 0.125, "units": 16, "patch": (8, 32, 32), "ratio": 2}
TOPOLOGY_CASES = [
    ModelSpec(organelle="dna", topology="3d", **TINY),
    ModelSpec(organelle="dna", topology="2d", **TINY),
    # 2to3d with projection 3d needs C_k divisible by D_k: the sparse grid (postfix) allows it
    ModelSpec(organelle="dna", topology="2to3d", interpolation="postfix", **TINY),
    ModelSpec(organelle="dna", topology="2to3d", projection="2d", **TINY),
    ModelSpec(organelle="dna", topology="3to2d", **TINY),
    ModelSpec(organelle="dna", topology="3to2d", interpolation="none", projection="2d", **TINY),
]
TASKS = ("dna", "membrane", "nucleolus")
MULTITASK_CASES = [
    ModelSpec(organelle="membrane", embedding=embedding, tasks=TASKS, topology=topology, **TINY)
    for embedding, topology in (("dodnet", "3to2d"), ("repmode", "3d"), ("tsns", "2d"))
]
PLANE = ModelSpec(organelle="dna", ratio=1, topology="2d", patch=(1, 32, 32), width=0.125, units=16)


def _name(spec: ModelSpec) -> str:
    return f"{spec.embedding}-{spec.topology}-{spec.interpolation}-proj{spec.projection}"


def _load_unregistered(path: Path) -> ModuleType:
    """Execute the file as a module *not* registered in sys.modules (the strictest loader)."""
    spec = importlib.util.spec_from_file_location("sparsessp_net_shipped", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_network_source(tmp_path_factory.mktemp("shipped"))


@pytest.fixture(scope="module")
def shipped(shipped_path: Path) -> ModuleType:
    return _load_unregistered(shipped_path)


def _project_net(spec: ModelSpec) -> torch.nn.Module:
    """A project network with non-initial batch-norm statistics (and task gates), in eval mode."""
    torch.manual_seed(0)
    net = build_net(spec)
    x = torch.randn(2, 1, *spec.input_patch, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        net.train()(x)
    net.eval()
    return net.baked() if net.conditioned else net


def _input(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def _shipped_net(
    shipped: ModuleType, spec: ModelSpec, variant: str, state: dict
) -> torch.nn.Module:
    net = getattr(shipped, ARCHITECTURE_CALLABLE)(variant, **spec.model_dump(mode="json"))
    net.load_state_dict(state, strict=True)
    return net.eval()


# ---- the generated file -----------------------------------------------------------------------


def test_generated_file_imports_only_torch_and_the_standard_library():
    tree = ast.parse(network_source())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            imported.add((node.module or "").split(".")[0])
    assert "torch" in imported
    assert imported - {"torch"} <= set(sys.stdlib_module_names)
    assert "sparsessp_bmz" not in imported and "pydantic" not in imported


def test_bundling_is_deterministic_and_marks_the_file_as_generated(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_network_source(tmp_path / "a")
    second = write_network_source(tmp_path / "b")
    assert first.name == SHIPPED_FILE
    assert first.read_bytes() == second.read_bytes() == network_source().encode("utf-8")
    header = network_source().split("\n\n", 1)[0]
    assert f"sparsessp-bmz {sparsessp_bmz.__version__}" in header
    assert "GENERATED" in header and "Do not edit" in header
    assert b"\r" not in first.read_bytes()


def test_generated_file_defines_every_name_of_the_bundled_modules_once():
    tree = ast.parse(network_source())
    defined = [node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)]
    assert len(defined) == len(set(defined))
    for name in ("NetGeometry", "GeometryMixin", "SparseSSPNet", "DenseGridNet", "PlaneNet"):
        assert name in defined
    assert ARCHITECTURE_CALLABLE in defined


# ---- bit-for-bit rebuilds ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", TOPOLOGY_CASES, ids=_name)
def test_shipped_network_reproduces_the_project_network_bit_for_bit(shipped, spec: ModelSpec):
    net = _project_net(spec)
    copy = _shipped_net(shipped, spec, "standard", net.state_dict())
    x = _input((2, 1, *spec.input_patch))
    with torch.no_grad():
        assert torch.equal(copy(x), net(x))


@pytest.mark.parametrize("spec", MULTITASK_CASES, ids=_name)
def test_shipped_network_reproduces_a_baked_multitask_network_bit_for_bit(shipped, spec: ModelSpec):
    net = _project_net(spec)  # baked for `membrane`
    copy = _shipped_net(shipped, spec, "standard", net.state_dict())
    x = _input((2, 1, *spec.input_patch))
    with torch.no_grad():
        assert torch.equal(copy(x), net(x))


def test_shipped_dense_and_plane_variants_reproduce_the_project_bit_for_bit(shipped):
    volume = TOPOLOGY_CASES[-2]
    dense = DenseGridNet(_project_net(volume), volume.ratio)
    x = _input((2, 1, *volume.patch))
    copy = _shipped_net(shipped, volume, "dense", dense.state_dict())
    plane = PlaneNet(_project_net(PLANE))
    planes = _input((2, 1, 48, 32))
    plane_copy = _shipped_net(shipped, PLANE, "plane", plane.state_dict())
    with torch.no_grad():
        assert torch.equal(copy(x), dense(x))
        assert torch.equal(plane_copy(planes), plane(planes))


_INDEPENDENT_RUN = textwrap.dedent(
    """
    import importlib.abc, importlib.util, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("sparsessp_bmz", "pydantic"):
                raise ImportError(f"{name} is not installed here")
            return None

    sys.meta_path.insert(0, Blocker())
    try:
        import sparsessp_bmz
    except ImportError:
        pass
    else:
        raise SystemExit("the import blocker does not work")

    import torch

    source, cases, out, threads = sys.argv[1:5]
    torch.set_num_threads(int(threads))
    # load as bioimageio.core does: a module registered in sys.modules under a unique name
    spec = importlib.util.spec_from_file_location("sparsessp_net_abc123", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    results = {}
    for name, case in torch.load(cases, weights_only=True).items():
        net = module.build_package_net(case["variant"], **case["fields"])
        net.load_state_dict(case["state"], strict=True)
        with torch.no_grad():
            results[name] = net.eval()(case["input"])
    torch.save(results, out)
    assert not any(m.split(".")[0] in ("sparsessp_bmz", "pydantic") for m in sys.modules)
    """
)


def test_shipped_network_builds_and_matches_where_the_project_cannot_be_imported(
    shipped_path: Path, tmp_path: Path
):
    cases: dict[str, tuple[torch.nn.Module, ModelSpec, str, torch.Tensor]] = {}
    for spec in (TOPOLOGY_CASES[-2], MULTITASK_CASES[1]):
        cases[_name(spec)] = (
            _project_net(spec),
            spec,
            "standard",
            _input((1, 1, *spec.input_patch)),
        )
    volume = TOPOLOGY_CASES[0]
    dense = DenseGridNet(_project_net(volume), volume.ratio)
    cases["dense"] = (dense, volume, "dense", _input((1, 1, 16, 32, 48)))
    cases["plane"] = (PlaneNet(_project_net(PLANE)), PLANE, "plane", _input((1, 1, 32, 32)))
    payload = {
        name: {
            "fields": spec.model_dump(mode="json"),
            "variant": variant,
            "state": net.state_dict(),
            "input": x,
        }
        for name, (net, spec, variant, x) in cases.items()
    }
    torch.save(payload, tmp_path / "cases.pt")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _INDEPENDENT_RUN,
            str(shipped_path),
            str(tmp_path / "cases.pt"),
            str(tmp_path / "out.pt"),
            str(torch.get_num_threads()),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = torch.load(tmp_path / "out.pt", weights_only=True)
    for name, (net, _, _, x) in cases.items():
        with torch.no_grad():
            assert torch.equal(results[name], net(x)), name


# ---- variants ---------------------------------------------------------------------------------


def test_dense_variant_is_the_standard_network_on_every_rth_slice_from_the_first():
    spec = ModelSpec(organelle="dna", topology="3d", **{**TINY, "ratio": 4})
    net = _project_net(spec)
    dense = DenseGridNet(net, spec.ratio)
    x = _input((2, 1, 16, 32, 32))
    kept = x.index_select(2, torch.tensor([0, 4, 8, 12]))
    with torch.no_grad():
        out = dense(x)
        assert out.shape == x.shape
        assert torch.equal(out, net(x[:, :, :: spec.ratio]))
        assert torch.equal(out, net(kept))


def test_dense_variant_refuses_a_depth_that_is_not_a_multiple_of_the_ratio():
    spec = TOPOLOGY_CASES[0]
    dense = DenseGridNet(_project_net(spec), spec.ratio)
    with pytest.raises(ValueError, match="multiple of the sparsity ratio r=2"):
        dense(_input((1, 1, 15, 32, 32)))


def test_single_plane_description_validates_and_its_network_maps_planes_to_planes():
    assert PLANE.input_patch == (1, 32, 32) and PLANE.level_depths == (1,) * 5
    assert PLANE.z_pools == (False,) * 4
    net = _project_net(PLANE)
    plane = PlaneNet(net)
    with torch.no_grad():
        assert net(_input((2, 1, 1, 32, 48))).shape == (2, 1, 1, 32, 48)
        assert plane(_input((3, 1, 64, 16))).shape == (3, 1, 64, 16)
    PLANE.check_input_shape(1, 64, 16)


def test_plane_variant_refuses_a_volume_network_and_unknown_variants_are_refused():
    with pytest.raises(ValueError, match="patch depth 1, ratio 1 and topology '2d'"):
        PlaneNet(build_net(TOPOLOGY_CASES[1]))
    with pytest.raises(ValueError, match="unknown package variant 'sparse'"):
        build_package_net("sparse", **PLANE.model_dump())
    with pytest.raises(ValueError, match="unknown package variant"):
        wrap_variant(build_net(PLANE), "volume")


def test_standard_variant_keeps_todays_state_dict_keys_and_wrappers_prefix_them_with_net():
    for spec in (TOPOLOGY_CASES[0], MULTITASK_CASES[0]):
        fields = spec.model_dump(mode="json")
        today = set(build_net_from_fields(**fields).state_dict())
        assert today == set(_project_net(spec).state_dict())
        assert set(build_package_net("standard", **fields).state_dict()) == today
        assert set(build_package_net("dense", **fields).state_dict()) == {
            f"net.{key}" for key in today
        }
    plane_keys = set(build_package_net("plane", **PLANE.model_dump()).state_dict())
    assert plane_keys == {f"net.{key}" for key in build_net(PLANE).state_dict()}


def test_wrapped_variants_trace_and_export_to_onnx_with_free_sizes(tmp_path: Path):
    import onnxruntime

    volume = TOPOLOGY_CASES[0]
    cases = [
        (DenseGridNet(_project_net(volume), volume.ratio), (1, 1, 8, 32, 32), (2, 1, 16, 48, 32)),
        (PlaneNet(_project_net(PLANE)), (1, 1, 32, 32), (2, 1, 48, 64)),
    ]
    for index, (net, shape, other) in enumerate(cases):
        x, y = _input(shape), _input(other)
        dynamic = {axis: f"d{axis}" for axis in range(len(shape)) if axis != 1}
        path = tmp_path / f"net{index}.onnx"
        with torch.no_grad():
            traced = torch.jit.trace(net, x)
            expected = net(y)
            torch.testing.assert_close(traced(y), expected, rtol=1e-5, atol=1e-5)
            torch.onnx.export(
                net,
                (x,),
                str(path),
                dynamo=False,
                opset_version=17,
                input_names=["raw"],
                output_names=["prediction"],
                dynamic_axes={"raw": dynamic, "prediction": dynamic},
            )
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (result,) = session.run(None, {"raw": y.numpy()})
        np.testing.assert_allclose(result, expected.numpy(), rtol=1e-4, atol=1e-4)


# ---- one description, two classes ------------------------------------------------------------


def test_net_geometry_has_the_fields_and_defaults_of_model_spec():
    fields = {f.name: f.default for f in dataclasses.fields(NetGeometry)}
    assert list(fields) == list(ModelSpec.model_fields)
    for name, info in ModelSpec.model_fields.items():
        if info.is_required():
            assert fields[name] is dataclasses.MISSING
        else:
            assert fields[name] == info.default, name


def test_net_geometry_derives_the_same_geometry_as_model_spec():
    derived = (
        "encoder_channels",
        "input_patch",
        "grid_depth",
        "z_pools",
        "z_factor",
        "level_depths",
        "fixed_depth",
        "input_depth_step",
        "num_tasks",
        "task_index",
        "model_id",
    )
    specs = [*all_valid_specs(ratio=8, patch=(32, 64, 64), width=0.5, units=64), PLANE]
    specs += MULTITASK_CASES
    for spec in specs:
        plain = NetGeometry(**spec.model_dump(mode="json"))
        assert plain == spec.net_geometry()
        assert isinstance(plain.patch, tuple) and isinstance(plain.tasks, tuple)
        for name in derived:
            assert getattr(plain, name) == getattr(spec, name), (spec, name)
    other = MULTITASK_CASES[0].net_geometry().for_task("nucleolus")
    assert isinstance(other, NetGeometry) and other.task_index == 2


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ratio": 4, "patch": (6, 32, 32)}, "not divisible by the sparsity ratio"),
        ({"topology": "3d", "interpolation": "none"}, "needs a 2D decoder"),
        ({"topology": "3d", "projection": "2d"}, "only applies to the hybrid"),
        ({"topology": "3to2d", "units": 20}, "divisible by every level depth"),
        ({"embedding": "repmode"}, "needs tasks"),
        ({"tasks": ("dna",)}, "leave tasks empty"),
    ],
)
def test_net_geometry_rejects_what_model_spec_rejects_with_the_same_reason(fields, reason):
    full = {"organelle": "dna", **TINY, **fields}
    with pytest.raises(ValueError, match=reason) as plain:
        NetGeometry(**full)
    with pytest.raises(ValidationError, match=reason) as pydantic_error:
        ModelSpec(**full)
    assert str(plain.value) in str(pydantic_error.value)


def test_net_geometry_refuses_unknown_choices():
    with pytest.raises(ValueError, match="topology must be one of"):
        NetGeometry(organelle="dna", topology="4d")
    with pytest.raises(TypeError, match="unknown_field"):
        NetGeometry(organelle="dna", unknown_field=1)


def test_model_spec_with_the_geometry_mixin_dumps_exactly_its_fields():
    spec = ModelSpec(organelle="dna")
    assert spec.model_dump() == {
        "organelle": "dna",
        "ratio": 2,
        "topology": "3to2d",
        "interpolation": "prefix",
        "projection": "3d",
        "embedding": "none",
        "tasks": (),
        "width": 1.0,
        "units": 256,
        "patch": (32, 128, 128),
    }
    assert ModelSpec.model_validate_json(spec.model_dump_json()) == spec
    with pytest.raises(ValidationError, match="frozen"):
        spec.ratio = 4  # type: ignore[misc]


# ---- the bundler's own rules ------------------------------------------------------------------

_CALLABLE = "def build_package_net(variant='standard', **fields):\n    return None\n"


def test_bundling_drops_package_imports_including_parenthesised_ones():
    source = bundle_modules(
        {
            "geometry": '"""Doc."""\n\nfrom __future__ import annotations\n\nA = 1\nB = 2\n',
            "variants": "from __future__ import annotations\n\nfrom sparsessp_bmz.nets.geometry"
            " import (\n    A,\n    B,\n)  # comment\nimport torch\n\n" + _CALLABLE,
        }
    )
    assert "sparsessp_bmz.nets.geometry import" not in source
    assert source.count("from __future__ import annotations") == 1
    assert "# Doc." in source
    namespace: dict = {}
    exec(compile(source, SHIPPED_FILE, "exec"), namespace)
    assert namespace["A"] == 1 and namespace["build_package_net"]() is None


@pytest.mark.parametrize(
    ("modules", "reason"),
    [
        ({"variants": "import numpy\n" + _CALLABLE}, r"imports \['numpy'\]"),
        ({"variants": "from pydantic import BaseModel\n" + _CALLABLE}, "pydantic"),
        ({"variants": "from sparsessp_bmz.spec import ModelSpec\n" + _CALLABLE}, "not one of"),
        ({"variants": "import sparsessp_bmz.nets.geometry\n" + _CALLABLE}, "only absolute"),
        ({"a": "X = 1\n", "variants": "X = 2\n" + _CALLABLE}, "'X' is bound in both"),
        ({"a": "from sparsessp_bmz.nets.variants import Y\n", "variants": _CALLABLE}, "later"),
        ({"a": "X = 1\n", "variants": "from sparsessp_bmz.nets.a import X as Z\n"}, "as Z"),
        ({"a": "X = 1\n", "variants": "from sparsessp_bmz.nets.a import W\n"}, "W is not"),
        ({"variants": "def f():\n    import yaml\n" + _CALLABLE}, "yaml"),
        ({"variants": "X = 1\n"}, "defines no build_package_net"),
        ({"variants": "def broken(:\n"}, "does not parse"),
    ],
)
def test_bundling_refuses_what_would_not_be_one_self_contained_file(modules, reason):
    with pytest.raises(NetSourceError, match=reason):
        bundle_modules(modules)


def test_bundle_order_lists_every_module_of_the_nets_package_but_the_project_side_ones():
    # complexity (MAC counts, pydantic) serves the CLI and is not part of the network
    nets = Path(netsource.resources.files(netsource.NETS_PACKAGE))  # type: ignore[arg-type]
    on_disk = {path.stem for path in nets.glob("*.py")} - {"__init__", "complexity"}
    assert set(netsource.BUNDLED_MODULES) == on_disk
