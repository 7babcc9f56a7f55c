"""Precise BN: batch-norm statistics recomputed from training batches before validation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.precision import HalfPrecision, Precision
from torch import Tensor, nn

from sparsessp_bmz.training.batchnorm import PreciseBatchNorm


class ToyModule(L.LightningModule):
    """Conv-BN-ReLU-conv-BN; records the task ids it was called with."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1),
            nn.BatchNorm3d(4),
            nn.ReLU(),
            nn.Conv3d(4, 2, 3, padding=1),
            nn.BatchNorm3d(2),
        )
        self.seen_tasks: list[Tensor | None] = []

    def task_ids(self, batch: dict[str, Any]) -> Tensor | None:
        return batch.get("task")

    def forward(self, x: Tensor, task: Tensor | None = None) -> Tensor:
        self.seen_tasks.append(task)
        return self.net(x)


def batches(count: int, consumed: list[int] | None = None):  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(1)
    for index in range(count):
        if consumed is not None:
            consumed.append(index)
        yield {
            "input": 3.0 + 2.0 * torch.randn(4, 1, 4, 16, 16, generator=generator),
            "task": torch.tensor([0, 1, 0, 1]),
        }


def corrupt_running_stats(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm3d):
            layer.running_mean.fill_(5.0)
            layer.running_var.fill_(100.0)


VALIDATING = SimpleNamespace(sanity_checking=False, precision_plugin=Precision())


def test_recalibrated_eval_network_matches_the_batch_statistics_network() -> None:
    module = ToyModule()
    corrupt_running_stats(module)
    calibration = next(batches(1))
    PreciseBatchNorm(lambda: [calibration], batches=1).on_validation_start(VALIDATING, module)
    module.eval()
    with torch.no_grad():
        recalibrated = module(calibration["input"])
        module.train()
        batch_statistics = module(calibration["input"])
    # running_var is the unbiased variance, batch normalisation the biased one: n/(n-1) ~ 1.001
    torch.testing.assert_close(recalibrated, batch_statistics, rtol=1e-2, atol=1e-2)


def test_statistics_are_the_exact_average_over_the_first_n_batches_only() -> None:
    module = ToyModule()
    consumed: list[int] = []
    PreciseBatchNorm(lambda: batches(10, consumed), batches=3).on_validation_start(
        VALIDATING, module
    )
    assert consumed == [0, 1, 2]
    first = module.net[1]
    inputs = [b["input"] for b in batches(3)]
    with torch.no_grad():
        means = [module.net[0](x).mean(dim=(0, 2, 3, 4)) for x in inputs]
    torch.testing.assert_close(first.running_mean, torch.stack(means).mean(0))


def test_task_ids_reach_the_network_and_the_training_mode_is_restored() -> None:
    module = ToyModule()
    module.eval()
    PreciseBatchNorm(lambda: batches(2), batches=2).on_validation_start(VALIDATING, module)
    assert not module.training
    assert all(t is not None and t.tolist() == [0, 1, 0, 1] for t in module.seen_tasks)
    assert len(module.seen_tasks) == 2


def test_zero_batches_and_the_sanity_check_keep_the_running_averages() -> None:
    for callback, trainer in [
        (PreciseBatchNorm(lambda: batches(2), batches=0), VALIDATING),
        (PreciseBatchNorm(lambda: batches(2), batches=2), SimpleNamespace(sanity_checking=True)),
    ]:
        module = ToyModule()
        corrupt_running_stats(module)
        callback.on_validation_start(trainer, module)
        assert torch.all(module.net[1].running_mean == 5.0)
        assert not module.seen_tasks


def test_statistics_are_computed_in_the_runs_precision() -> None:
    module = ToyModule().to(torch.bfloat16)
    corrupt_running_stats(module)
    trainer = SimpleNamespace(sanity_checking=False, precision_plugin=HalfPrecision("bf16-true"))
    PreciseBatchNorm(lambda: batches(2), batches=2).on_validation_start(trainer, module)
    assert module.net[1].running_mean.dtype == torch.bfloat16
    assert torch.all(module.net[1].running_mean.abs() < 5.0)  # recomputed, not the corrupt 5.0
