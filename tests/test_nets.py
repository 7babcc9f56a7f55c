"""The SparseSSP network family: every valid description builds a network that keeps the contract
(B, 1, D/r, H, W) -> (B, 1, D, H, W), trains, traces and is deterministic in eval mode."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from sparsessp_bmz.nets import build_net, build_net_from_fields
from sparsessp_bmz.nets.complexity import all_valid_specs, measure
from sparsessp_bmz.spec import SPARSITY_RATIOS, ModelSpec

SMALL = {"width": 0.25, "units": 32, "patch": (8, 32, 32)}
SPECS = [
    spec
    for ratio in SPARSITY_RATIOS
    for spec in all_valid_specs(ratio=ratio, patch=SMALL["patch"], width=0.25, units=32)
]


def _name(spec: ModelSpec) -> str:
    return f"{spec.topology}-{spec.interpolation}-proj{spec.projection}-r{spec.ratio}"


def _sparse_input(spec: ModelSpec, batch: int = 2, size: tuple[int, int, int] | None = None):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 1, *(size or spec.input_patch), generator=generator)


def _other_size(spec: ModelSpec) -> tuple[int, int, int]:
    """A valid input size different from the training patch (depth too, where allowed)."""
    depth, height, width = spec.input_patch
    if not spec.fixed_depth:
        depth = 2 * depth
    return depth, height + 16, width - 16


def test_every_topology_interpolation_projection_and_ratio_is_covered():
    combos = {(s.topology, s.interpolation, s.projection) for s in SPECS}
    assert len(combos) == 15
    assert {s.ratio for s in SPECS} == set(SPARSITY_RATIOS)


@pytest.mark.parametrize("spec", SPECS, ids=_name)
def test_network_maps_sparse_input_to_dense_finite_output(spec: ModelSpec):
    net = build_net(spec).eval()
    for size in (spec.input_patch, _other_size(spec)):
        with torch.no_grad():
            out = net(_sparse_input(spec, size=size))
        assert out.shape == (2, 1, size[0] * spec.ratio, size[1], size[2])
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("spec", SPECS, ids=_name)
def test_gradient_reaches_every_parameter(spec: ModelSpec):
    torch.manual_seed(0)
    net = build_net(spec).train()
    net(_sparse_input(spec)).square().mean().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


@pytest.mark.parametrize("spec", SPECS, ids=_name)
def test_traced_network_matches_eager_at_an_untraced_size(spec: ModelSpec):
    torch.manual_seed(0)
    net = build_net(spec).eval()
    with torch.no_grad():
        traced = torch.jit.trace(net, _sparse_input(spec, batch=1))
        x = _sparse_input(spec, batch=1, size=_other_size(spec))
        torch.testing.assert_close(traced(x), net(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS[::7], ids=_name)
def test_eval_mode_is_deterministic(spec: ModelSpec):
    torch.manual_seed(0)
    net = build_net(spec).eval()
    x = _sparse_input(spec)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_same_seed_builds_identical_weights():
    spec = ModelSpec(organelle="dna", **SMALL)
    torch.manual_seed(3)
    first = build_net(spec).state_dict()
    torch.manual_seed(3)
    second = build_net_from_fields(**spec.model_dump()).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ratio": 4, "patch": (6, 32, 32)}, "not divisible by the sparsity ratio"),
        ({"ratio": 3}, "ratio"),
        ({"patch": (8, 30, 32)}, "multiples of 16"),
        ({"topology": "3d", "interpolation": "none"}, "needs a 2D decoder"),
        ({"topology": "2to3d", "interpolation": "none"}, "needs a 2D decoder"),
        ({"topology": "3d", "projection": "2d"}, "only applies to the hybrid"),
        ({"topology": "3to2d", "units": 20}, "divisible by every level depth"),
        ({"topology": "2to3d", "width": 0.125, "patch": (32, 32, 32)}, "C_k must be divisible"),
        ({"organelle": "bad name!"}, "organelle"),
        ({"embedding": "repmode"}, "embedding"),
        ({"width": 0}, "width"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_invalid_description_is_rejected_with_its_reason(fields: dict, reason: str):
    with pytest.raises(ValidationError, match=reason):
        ModelSpec(**{"organelle": "dna", **SMALL, **fields})


def test_fixed_depth_networks_reject_other_depths_and_3d_accepts_multiples():
    hybrid = ModelSpec(organelle="dna", ratio=2, topology="3to2d", **SMALL)
    with pytest.raises(ValueError, match="exactly 4 input slices"):
        hybrid.check_input_shape(8, 32, 32)
    pure = ModelSpec(organelle="dna", ratio=2, topology="3d", **SMALL)
    assert pure.input_depth_step == 4
    pure.check_input_shape(12, 48, 16)
    with pytest.raises(ValueError, match="multiple of 4"):
        pure.check_input_shape(6, 32, 32)
    with pytest.raises(ValueError, match="multiples of 16"):
        pure.check_input_shape(8, 40, 32)


def test_shallow_sparse_grid_pools_z_only_late():
    spec = ModelSpec(organelle="dna", ratio=8, interpolation="none", patch=(32, 128, 128))
    assert spec.grid_depth == 4
    assert spec.z_pools == (False, False, True, True)
    assert spec.level_depths == (4, 4, 4, 2, 1)


def test_model_id_names_every_non_default_choice():
    assert ModelSpec(organelle="DNA", ratio=4).model_id == "sparsessp-dna-r4-3to2d"
    spec = ModelSpec(organelle="nuclear_envelope", interpolation="postfix", projection="2d")
    assert spec.model_id == "sparsessp-nuclear-envelope-r2-3to2d-postfix-proj2d"


@pytest.mark.parametrize(("topology", "paper_gmacs"), [("3d", 113.86), ("3to2d", 76.61)])
def test_paper_width_macs_match_paper_table6(topology: str, paper_gmacs: float):
    spec = ModelSpec(organelle="dna", topology=topology)
    assert measure(spec).gmacs == pytest.approx(paper_gmacs, rel=0.15)


def test_hybrids_cost_less_than_pure_3d_at_paper_width():
    gmacs = {
        topology: measure(ModelSpec(organelle="dna", topology=topology)).gmacs
        for topology in ("3d", "2d", "2to3d", "3to2d")
    }
    assert gmacs["2d"] < gmacs["2to3d"] < gmacs["3to2d"] < gmacs["3d"]
