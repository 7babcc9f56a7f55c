"""A real scheduler: a 2-entry matrix submitted as a SLURM array through `--executor slurm` to a
single-node SLURM on localhost (tests/slurm_fixtures.py), waited for, then collected."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_fixtures import small_simulation
from matrix_fixtures import write_matrix
from slurm_fixtures import LocalSlurm, local_slurm

from sparsessp_bmz.training.executors import JOBS_FILE, read_jobs
from sparsessp_bmz.training.matrix import load_matrix, summary_dir
from sparsessp_bmz.training.matrix_status import statuses

__all__ = ["local_slurm", "small_simulation"]  # fixtures

#: What the local node offers: CPUs, no GPU.
CPU_CLUSTER = """cluster:
  gpus_per_task: 0
  cpus_per_task: 1
  mem_gb: 2
  timeout_min: 30
  export: {cpus_per_task: 1, mem_gb: 4}
"""
CLI = str(Path(sys.executable).parent / "sparsessp-bmz")
#: Where the sbatch script submitit wrote and the timings are kept for the record.
RECORD = Path("/tmp/sparsessp_slurm_test")


def cli(slurm: LocalSlurm, *args: str) -> str:
    done = subprocess.run([CLI, *args], env=slurm.env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_a_matrix_runs_as_a_slurm_array_job_and_is_collected(
    local_slurm: LocalSlurm, small_simulation: Path, tmp_path: Path
) -> None:
    matrix = write_matrix(tmp_path, small_simulation, "[dna, mitochondria]", extra=CPU_CLUSTER)
    start = time.monotonic()
    packages = tmp_path / "packages"
    submit = ["matrix", str(matrix), "--executor", "slurm", "--export", "--out", str(packages)]
    cli(local_slurm, *submit)
    submitted = time.monotonic()
    local_slurm.wait_until_idle(timeout_s=600)
    ran = time.monotonic()
    cli(local_slurm, "matrix", "collect", str(matrix))
    collected = time.monotonic()

    settings, entries = load_matrix(matrix)
    out = summary_dir(matrix, settings, entries)
    jobs = read_jobs(out)
    found = statuses(settings, entries, out)
    assert [s.state for s in found] == ["finished", "finished"], local_slurm.tail_logs()
    array = {job.split("_")[0] for job in jobs.values()}
    assert len(array) == 1 and sorted(jobs.values()) == [f"{next(iter(array))}_{i}" for i in (0, 1)]
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["organelle"], r["status"]) for r in rows] == [
        ("dna", "finished"),
        ("mitochondria", "finished"),
    ]
    assert all(math.isfinite(float(r["r2"])) for r in rows)
    # the export job ran after the array (afterany) and placed a package per entry
    assert sorted(p.name for p in packages.glob("*.zip")) == [
        "sparsessp-dna-r2-3to2d.zip",
        "sparsessp-mitochondria-r2-3to2d.zip",
    ]
    assert json.loads((out / JOBS_FILE).read_text())["export"]

    RECORD.mkdir(exist_ok=True)
    scripts = sorted((settings.cluster.log_dir or out / "slurm").glob("*/*_submission.sh"))
    for script in scripts:  # the array's, then the export job's
        shutil.copy(script, RECORD / script.name)
    (RECORD / "timings.txt").write_text(
        f"submit {submitted - start:.1f} s\narray to idle {ran - submitted:.1f} s\n"
        f"collect {collected - ran:.1f} s\ntotal {collected - start:.1f} s\n"
    )


@pytest.mark.slow
def test_a_task_warned_by_slurm_requeues_itself_and_ends_with_the_uninterrupted_weights(
    local_slurm: LocalSlurm, small_simulation: Path, tmp_path: Path
) -> None:
    import torch

    from sparsessp_bmz.training.checkpoint import load_trained
    from sparsessp_bmz.training.run import train

    steps = "optim.max_steps=40"
    matrix = write_matrix(tmp_path, small_simulation, "[dna]", extra=CPU_CLUSTER)
    cli(local_slurm, "matrix", str(matrix), "--executor", "slurm", steps)
    settings, (entry,) = load_matrix(matrix, [steps])
    assert entry.config is not None
    (job,) = read_jobs(summary_dir(matrix, settings, [entry])).values()
    last = entry.config.run_dir() / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists():
        assert time.monotonic() < deadline, local_slurm.tail_logs()
        time.sleep(0.2)
    time.sleep(0.5)
    local_slurm.run("scancel", "--signal=USR1", job)  # what SLURM sends before the time limit
    local_slurm.wait_until_idle(timeout_s=600)
    (state,) = statuses(settings, [entry], tmp_path)
    assert state.state == "finished", local_slurm.tail_logs()
    logs = "".join(
        path.read_text(errors="replace")
        for path in (
            settings.cluster.log_dir or summary_dir(matrix, settings, [entry]) / "slurm"
        ).rglob("*_log.*")
    )
    assert f"SLURM job {job} requeued" in logs

    straight = entry.config.model_copy(
        update={"trainer": entry.config.trainer.model_copy(update={"run_dir": tmp_path / "s"})}
    )
    expected = load_trained(train(straight).last_checkpoint).net.state_dict()
    actual = load_trained(last).net.state_dict()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


@pytest.mark.slow
def test_a_job_sbatch_refuses_is_one_error_with_its_reason(
    local_slurm: LocalSlurm, small_simulation: Path, tmp_path: Path
) -> None:
    cluster = CPU_CLUSTER.replace("cluster:\n", "cluster:\n  partition: nosuchpartition\n")
    matrix = write_matrix(tmp_path, small_simulation, "[dna]", extra=cluster)
    done = subprocess.run(
        [CLI, "matrix", str(matrix), "--executor", "slurm"],
        env=local_slurm.env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert "error: sbatch refused array sparsessp-matrix" in message
    assert "invalid partition" in message.lower() and "cluster: section" in message
