"""Tiny matrix files, training presets and processes (a lock holder, a training to interrupt),
shared by the matrix, lock, requeue and DDP tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml
from training_fixtures import tiny_raw

#: The command line of `sparsessp-bmz train` in this environment.
TRAIN = [str(Path(sys.executable).parent / "sparsessp-bmz"), "train"]


def write_preset(manifest: Path, run_dir: Path, max_steps: int, **trainer: Any) -> Path:
    """The tiny training config as a YAML preset next to `run_dir`, with trainer settings."""
    raw = tiny_raw(manifest, run_dir, max_steps=max_steps)
    raw["trainer"].update(trainer)
    path = run_dir.with_name(f"{run_dir.name}.yaml")
    path.write_text(yaml.safe_dump(raw))
    return path


def start_training(preset: Path, run_dir: Path, **popen: Any) -> subprocess.Popen[str]:
    """`sparsessp-bmz train PRESET` in a process of its own, returned once its first epoch
    checkpoint is written (and half a second more), to be interrupted."""
    process = subprocess.Popen([*TRAIN, str(preset)], text=True, **popen)
    last = run_dir / "checkpoints" / "last.ckpt"
    while not last.exists() and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    return process


def write_matrix(
    folder: Path,
    manifest: Path,
    organelles: str,
    topologies: str = "[3to2d]",
    extra: str = "",
) -> Path:
    """A matrix of the tiny training config (2 steps per entry) over `organelles` x r2 x
    `topologies`; `extra` is appended YAML (a cluster: section, overrides, ...)."""
    (folder / "base.yaml").write_text(
        "model: {organelle: dna, ratio: 2, topology: 3to2d, width: 0.125, units: 16, "
        "patch: [8, 32, 32]}\n"
        f"data: {{manifest: {manifest}, samples_per_epoch: 4, patches_per_volume: 2}}\n"
        "optim: {batch_size: 2, max_steps: 2, val_samples: 2, lr: 1.0e-3}\n"
        f"trainer: {{output_dir: {folder / 'runs'}, progress_bar: false, accelerator: cpu}}\n"
    )
    matrix = folder / "matrix.yaml"
    matrix.write_text(
        f"base: base.yaml\norganelles: {organelles}\nratios: [2]\ntopologies: {topologies}\n"
        + extra
    )
    return matrix


class LockHolderProcess:
    """Another process holding the lock of `run_dir` (as a training would) until `stop()`."""

    def __init__(self, run_dir: Path, env: dict[str, str] | None = None) -> None:
        code = textwrap.dedent(
            f"""
            import sys
            from pathlib import Path
            from sparsessp_bmz.training.run_lock import run_lock
            with run_lock(Path({str(run_dir)!r})):
                print("locked", flush=True)
                sys.stdin.readline()
            """
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == "locked", line

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
