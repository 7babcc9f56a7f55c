"""A tiny model behind a checkpoint path, for the tests of commands that read a checkpoint."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from sparsessp_bmz.nets import build_net
from sparsessp_bmz.spec import ModelSpec
from sparsessp_bmz.trained import TrainedModel

SPEC = ModelSpec(
    organelle="dna", ratio=2, topology="3to2d", width=0.125, units=16, patch=(8, 32, 32)
)


@pytest.fixture
def checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`model.ckpt` in the test folder, whose loader yields a tiny untrained model.

    The commands are tested for their wiring (reading, windowing, writing, errors); checkpoint
    round trips and the loader's own hostile cases are the trainer's tests.
    """
    torch.manual_seed(0)
    trained = TrainedModel(spec=SPEC, net=build_net(SPEC).eval())
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"checkpoint")
    module = types.ModuleType("sparsessp_bmz.training.checkpoint")
    module.load_trained = lambda p: trained  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sparsessp_bmz.training.checkpoint", module)
    return path
