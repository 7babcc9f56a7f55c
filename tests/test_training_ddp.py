"""Multi-process training on the CPU: `train ... trainer.devices=2 trainer.strategy=ddp` (gloo)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from data_fixtures import small_simulation
from matrix_fixtures import TRAIN, start_training, write_preset

from sparsessp_bmz.training.preemption import EXIT_PREEMPTED

__all__ = ["small_simulation"]  # fixtures

STEPS = 20


def preset(manifest: Path, run_dir: Path) -> Path:
    return write_preset(manifest, run_dir, STEPS, devices=2, strategy="ddp", log_every_n_steps=1)


def logged_steps(run_dir: Path) -> list[int]:
    with (run_dir / "logs" / "metrics.csv").open() as handle:
        return [int(row["step"]) for row in csv.DictReader(handle) if row["train_loss_step"]]


class CheckpointWriters(threading.Thread):
    """Collects the pids in the names of checkpoint files being written (`.NAME.PID.partial`)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder, self.pids, self.running = folder, set(), True

    def run(self) -> None:
        while self.running:
            if self.folder.is_dir():
                for name in os.listdir(self.folder):
                    if name.endswith(".partial"):
                        self.pids.add(int(name.split(".")[-2]))
            time.sleep(0.001)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_keeps_one_history_and_rank_0_writes_the_checkpoints(
    small_simulation: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    writers = CheckpointWriters(run_dir / "checkpoints")
    writers.start()
    process = subprocess.Popen(
        [*TRAIN, str(preset(small_simulation, run_dir))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = process.communicate(timeout=600)
    writers.running = False
    assert process.returncode == 0, output
    assert output.count("best validation MSE") == 1  # rank 1 trains in silence
    done = yaml.safe_load((run_dir / "done.json").read_text())
    assert done["global_step"] == STEPS
    assert logged_steps(run_dir) == list(range(STEPS))  # one history, no row twice
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
        "last.previous.ckpt",
    ]
    assert writers.pids == {process.pid}, "checkpoints written by another process than rank 0"


@pytest.mark.slow
@pytest.mark.parametrize("interruption", ["sigkill", "sigusr1"])
def test_an_interrupted_ddp_run_resumes_to_its_budget(
    small_simulation: Path, tmp_path: Path, interruption: str
) -> None:
    """kill -9 of both ranks (a node failure), or SLURM's warning sent to rank 0 only: rank 1 is
    its child, not an srun task, and stops at the same step through the ranks' shared decision
    (without it rank 1 would wait for rank 0 forever)."""
    run_dir = tmp_path / "run"
    command = [*TRAIN, str(preset(small_simulation, run_dir))]
    process = start_training(
        preset(small_simulation, run_dir),
        run_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, for kill -9 of every rank
    )
    if interruption == "sigkill":
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    else:
        process.send_signal(signal.SIGUSR1)
        output, _ = process.communicate(timeout=300)
        assert process.returncode == EXIT_PREEMPTED, output
    assert not (run_dir / "done.json").exists(), "the run finished before it was interrupted"
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert yaml.safe_load((run_dir / "done.json").read_text())["global_step"] == STEPS
    assert logged_steps(run_dir) == list(range(STEPS))  # every step once
