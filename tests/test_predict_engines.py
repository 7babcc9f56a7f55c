"""The engines a prediction can run on: frozen TorchScript and ONNX Runtime give eager's output
within float tolerance, bfloat16 is close but not exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsessp_bmz.nets import build_net
from sparsessp_bmz.predict import predict_volume
from sparsessp_bmz.spec import ModelSpec


def tiny(topology: str) -> tuple[ModelSpec, torch.nn.Module]:
    spec = ModelSpec(
        organelle="dna", ratio=2, topology=topology, width=0.125, units=16, patch=(8, 32, 32)
    )
    torch.manual_seed(0)
    net = build_net(spec)
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
    return spec, net.eval()


@pytest.mark.parametrize("engine", ["torchscript", "onnx"])
@pytest.mark.parametrize("topology", ["3to2d", "3d"])
def test_exact_engines_equal_eager_within_float_tolerance(topology: str, engine: str) -> None:
    spec, net = tiny(topology)
    sparse = np.random.default_rng(0).normal(size=(5, 40, 36)).astype(np.float32)
    eager = predict_volume(net, spec, sparse, overlap=0.25, batch_size=2)
    other = predict_volume(net, spec, sparse, overlap=0.25, batch_size=2, engine=engine)  # type: ignore[arg-type]
    np.testing.assert_allclose(other, eager, rtol=1e-4, atol=1e-4 * float(eager.std()))


def test_bf16_is_an_approximation_of_eager() -> None:
    spec, net = tiny("3to2d")
    sparse = np.random.default_rng(1).normal(size=(4, 32, 32)).astype(np.float32)
    eager = predict_volume(net, spec, sparse)
    bf16 = predict_volume(net, spec, sparse, engine="bf16")
    rms = float(np.sqrt(np.mean((bf16 - eager) ** 2)))
    assert 0 < rms < 0.2 * float(eager.std())
