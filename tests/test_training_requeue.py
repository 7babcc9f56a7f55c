"""SLURM's warning signal (SIGUSR1): the run stops, requeues its job, resumes bit-identically."""

from __future__ import annotations

import csv
import os
import signal
import stat
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
from data_fixtures import small_simulation
from matrix_fixtures import TRAIN, start_training, write_preset
from training_fixtures import tiny_raw

from sparsessp_bmz.training.checkpoint import load_trained
from sparsessp_bmz.training.config import TrainConfig, apply_overrides, config_from_mapping
from sparsessp_bmz.training.preemption import EXIT_PREEMPTED, Preempted, requeue
from sparsessp_bmz.training.run import train

__all__ = ["small_simulation"]  # fixtures
STEPS = "optim.max_steps=6"


@pytest.fixture(autouse=True)
def not_under_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `scontrol` first on PATH (SLURM is not installed here); returns its call log."""
    calls = tmp_path / "scontrol.calls"
    script = tmp_path / "bin" / "scontrol"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return calls


def config_for(manifest: Path, run_dir: Path, *overrides: str) -> TrainConfig:
    raw = apply_overrides(tiny_raw(manifest, run_dir), [STEPS, *overrides])
    return config_from_mapping(raw, "test")


class SignalAt(L.Callback):
    """Sends this process SLURM's warning signal before the given step (as SLURM would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_trained(run_dir / "checkpoints" / "last.ckpt").net.state_dict()


def rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "logs" / "metrics.csv").open()))


def assert_same_run(expected: Path, actual: Path) -> None:
    first, second = weights(expected), weights(actual)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert rows(actual) == rows(expected)


@pytest.mark.slow  # 12 s; the fast suite keeps the signalled stop and requeue (next test)
def test_sigusr1_stops_the_run_and_the_resumed_run_ends_bit_identical(
    small_simulation: Path, tmp_path: Path
) -> None:
    straight = train(
        config_for(small_simulation, tmp_path / "straight", "trainer.log_every_n_steps=1")
    )
    config = config_for(small_simulation, tmp_path / "signalled", "trainer.log_every_n_steps=1")
    with pytest.raises(
        Preempted, match=r"step 3 on SIGUSR1; not under SLURM.*run the same command"
    ):
        train(config, callbacks=[SignalAt(3)])
    assert not (config.run_dir() / "done.json").exists()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler is put back
    resumed = train(config)
    assert resumed.status == "resumed" and resumed.global_step == straight.global_step
    assert_same_run(straight.run_dir, resumed.run_dir)


def test_under_slurm_a_signalled_run_requeues_its_array_task(
    small_simulation: Path, tmp_path: Path, scontrol: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    with pytest.raises(Preempted, match="SLURM job 70_3 requeued"):
        train(config_for(small_simulation, tmp_path / "run"), callbacks=[SignalAt(3)])
    assert scontrol.read_text().split() == ["requeue", "70_3"]


def test_a_job_requeued_too_often_is_not_requeued_again(
    scontrol: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "3")
    assert "not requeued again" in requeue(max_requeues=3)
    assert not scontrol.exists()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert "SLURM job 77 requeued" in requeue(max_requeues=3)
    assert scontrol.read_text().split() == ["requeue", "77"]


@pytest.mark.slow
def test_cli_training_sent_sigusr1_exits_75_and_resumes_to_the_uninterrupted_weights(
    small_simulation: Path, tmp_path: Path
) -> None:
    straight, signalled = tmp_path / "straight", tmp_path / "signalled"
    subprocess.run([*TRAIN, str(write_preset(small_simulation, straight, 60))], check=True)
    preset = write_preset(small_simulation, signalled, 60)
    process = start_training(preset, signalled, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    process.send_signal(signal.SIGUSR1)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == EXIT_PREEMPTED, output
    assert "preempted:" in output and "not under SLURM" in output
    assert not (signalled / "done.json").exists(), "the run finished before the signal"
    subprocess.run([*TRAIN, str(preset)], check=True, capture_output=True)
    assert_same_run(straight, signalled)
