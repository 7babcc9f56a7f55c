"""Multi-task SparseSSP: task embeddings condition the network, and baking a task gives a plain,
task-free network that computes the same prediction (what a bioimage.io package ships)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from sparsessp_bmz.nets import build_net
from sparsessp_bmz.nets.complexity import measure
from sparsessp_bmz.nets.embeddings import DynamicHead, MoDEConv, TaskAware
from sparsessp_bmz.spec import TOPOLOGIES, ModelSpec

TASKS = ("dna", "membrane", "nucleolus")
SMALL = {"width": 0.25, "units": 32, "patch": (8, 32, 32), "ratio": 2, "tasks": TASKS}
CASES = [
    ModelSpec(organelle="membrane", embedding=embedding, topology=topology, **SMALL)
    for embedding, topology in itertools.product(("dodnet", "repmode", "tsns"), TOPOLOGIES)
]


def _name(spec: ModelSpec) -> str:
    return f"{spec.embedding}-{spec.topology}"


def _trained_a_little(spec: ModelSpec) -> torch.nn.Module:
    """A network whose gates, affines, controller and BN statistics are no longer at their init."""
    torch.manual_seed(0)
    net = build_net(spec)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(3, 1, *spec.input_patch)
    for _ in range(2):
        optimiser.zero_grad()
        net(x, torch.arange(3)).square().mean().backward()
        optimiser.step()
    return net.eval()


@pytest.mark.parametrize("spec", CASES, ids=_name)
def test_baked_network_matches_multitask_network_for_its_task(spec: ModelSpec):
    net = _trained_a_little(spec)
    x = torch.randn(2, 1, *spec.input_patch, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x, torch.full((2,), spec.task_index))
        baked = net.baked()
        torch.testing.assert_close(baked(x), expected, rtol=1e-5, atol=1e-5 * expected.abs().max())
    assert not baked.conditioned
    assert not any(isinstance(m, TaskAware) for m in baked.modules())


@pytest.mark.parametrize("spec", CASES, ids=_name)
def test_task_changes_the_prediction_and_every_parameter_learns(spec: ModelSpec):
    torch.manual_seed(0)
    net = build_net(spec).train()
    x = torch.randn(3, 1, *spec.input_patch)
    net(x, torch.arange(3)).square().mean().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    net = _trained_a_little(spec)  # at init every task is treated alike, by design
    with torch.no_grad():
        one = x[:1].expand(3, -1, -1, -1, -1)
        out = net(one, torch.arange(3))
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("spec", CASES, ids=_name)
def test_baked_network_traces_without_a_task_input(spec: ModelSpec):
    baked = _trained_a_little(spec).baked()
    x = torch.randn(1, 1, *spec.input_patch)
    other = torch.randn(1, 1, spec.input_patch[0] * (1 if spec.fixed_depth else 2), 48, 16)
    with torch.no_grad():
        traced = torch.jit.trace(baked, x)
        torch.testing.assert_close(traced(other), baked(other), rtol=1e-5, atol=1e-5)


def test_network_without_task_predicts_its_organelle():
    spec = CASES[0]
    net = _trained_a_little(spec)
    x = torch.randn(2, 1, *spec.input_patch)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x, torch.full((2,), TASKS.index("membrane"))))


@pytest.mark.parametrize("dims", [2, 3])
def test_mode_conv_equals_the_sum_of_its_five_gated_expert_branches(dims: int):
    torch.manual_seed(0)
    layer = MoDEConv(dims, in_ch=3, out_ch=4, num_tasks=2)
    with torch.no_grad():
        layer.gate_logits.normal_()
    x = torch.randn(2, 3, *(9,) * dims)
    conv = F.conv2d if dims == 2 else F.conv3d
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
    gates = layer.gate_logits.softmax(-1)[1]  # task 1: (out, experts)
    branches = [conv(x, w, padding=w.shape[-1] // 2) for w in layer.direct]
    for weight, size in zip(layer.pooled, (3, 5), strict=True):
        pooled = pool(x, size, stride=1, padding=size // 2, count_include_pad=True)
        branches.append(conv(pooled, weight))
    view = (1, -1) + (1,) * dims
    expected = sum(g.reshape(view) * b for g, b in zip(gates.T, branches, strict=True))
    expected = expected + layer.bias.reshape(view)
    code = F.one_hot(torch.tensor([1, 1]), 2).float()
    torch.testing.assert_close(layer(x, code), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_dodnet_head_ignores_the_magnitude_of_its_context(dims: int):
    """A dark window's bottleneck features are several times larger than training's; the head's
    generated weights must not scale with them (its output would grow with their cube)."""
    torch.manual_seed(0)
    head = DynamicHead(dims, in_ch=4, out_ch=2, context_ch=6, num_tasks=3)
    x = torch.randn(2, 4, *(5,) * dims)
    context = 2 * torch.randn(2, 6, *(1,) * dims)  # pooled variance >> LayerNorm's eps
    code = F.one_hot(torch.tensor([0, 2]), 3).float()
    with torch.no_grad():
        torch.testing.assert_close(
            head(x, 3 * context, code), head(x, context, code), rtol=1e-4, atol=1e-4
        )


def test_dodnet_head_starts_as_a_well_scaled_head_that_context_and_task_modulate():
    torch.manual_seed(0)
    head = DynamicHead(3, in_ch=16, out_ch=1, context_ch=32, num_tasks=3)
    contexts = torch.randn(2, 32)
    codes = F.one_hot(torch.tensor([0, 2]), 3).float()
    with torch.no_grad():
        params = head.controller(head.context_norm(contexts), codes)
        out = head(torch.randn(2, 16, 8, 8, 8), torch.randn(2, 32, 2, 2, 2), codes)
    assert out.std() < 0.5  # torch's default Linear init: 0.9-2.2, a 5-fold larger first loss
    shared, varying = params.mean(0).norm(), (params[0] - params[1]).norm()
    assert 0 < varying < 0.5 * shared


def test_baked_tsns_and_plain_network_have_the_same_cost():
    plain = ModelSpec(organelle="dna", topology="3to2d")
    tsns = ModelSpec(organelle="dna", topology="3to2d", embedding="tsns", tasks=TASKS)
    assert measure(tsns).baked_gmacs == pytest.approx(measure(plain).gmacs)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"embedding": "dodnet", "tasks": ()}, "needs tasks"),
        ({"embedding": "dodnet", "tasks": ("dna", "dna")}, "distinct"),
        ({"embedding": "tsns", "tasks": ("membrane",)}, "must be one of the tasks"),
        ({"embedding": "none", "tasks": ("dna",)}, "leave tasks empty"),
    ],
)
def test_invalid_multitask_description_is_rejected(fields: dict, reason: str):
    with pytest.raises(ValidationError, match=reason):
        ModelSpec(organelle="dna", patch=(8, 32, 32), width=0.25, units=32, **fields)


def test_for_task_describes_the_same_network_for_another_organelle():
    spec = CASES[0]
    other = spec.for_task("nucleolus")
    assert other.task_index == 2 and other.model_dump(exclude={"organelle"}) == spec.model_dump(
        exclude={"organelle"}
    )
    assert other.model_id == "sparsessp-nucleolus-r2-3d-dodnet"
