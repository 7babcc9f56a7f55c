"""The matrix through submitit: array plans and sbatch scripts (dry run), the submitit-local
executor end to end, `matrix status` and `matrix collect` from the run folders."""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path

import pytest
from data_fixtures import small_simulation
from matrix_fixtures import LockHolderProcess, write_matrix
from typer.testing import CliRunner

from sparsessp_bmz.cli import app
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.executors import (
    JOBS_FILE,
    Submission,
    job_key,
    read_jobs,
    record_jobs,
    submit_matrix,
)
from sparsessp_bmz.training.matrix import load_matrix, summary_dir
from sparsessp_bmz.training.matrix_status import statuses

__all__ = ["small_simulation"]  # fixtures

CLUSTER = """cluster:
  partition: gpu
  timeout_min: 60
  topologies: {2d: {timeout_min: 420, cpus_per_task: 2}}
  sbatch: {account: lab}
"""


def test_a_dry_run_prints_one_array_per_resource_set_and_submits_nothing(
    small_simulation: Path, tmp_path: Path
) -> None:
    matrix = write_matrix(tmp_path, small_simulation, "[dna, mitochondria]", "[3to2d, 2d]", CLUSTER)
    done = submit_matrix(matrix, [], "slurm", dry_run=True)
    arrays = {plan.name: plan for plan in done.submission.arrays}
    assert sorted(arrays) == ["sparsessp-matrix-2d", "sparsessp-matrix-3to2d"]
    assert [e.organelle for e in arrays["sparsessp-matrix-2d"].entries] == ["dna", "mitochondria"]
    by_name = dict(zip(arrays, done.submission.scripts, strict=True))
    three, two = by_name["sparsessp-matrix-3to2d"], by_name["sparsessp-matrix-2d"]
    for script in (three, two):
        assert "#SBATCH --array=0-1%2" in script
        assert "#SBATCH --partition=gpu" in script and "#SBATCH --account=lab" in script
        assert "#SBATCH --signal=USR1@90" in script and "#SBATCH --gpus-per-task=1" in script
        assert "-m submitit.core._submit" in script
    assert "#SBATCH --time=60" in three and "#SBATCH --cpus-per-task=8" in three
    assert "#SBATCH --time=420" in two and "#SBATCH --cpus-per-task=2" in two
    assert not (tmp_path / "runs").exists()


def test_an_unknown_cluster_key_is_one_error_naming_it(
    small_simulation: Path, tmp_path: Path
) -> None:
    matrix = write_matrix(tmp_path, small_simulation, "[dna]", extra="cluster: {gpus: 2}\n")
    result = CliRunner().invoke(app, ["matrix", str(matrix), "--executor", "slurm", "--dry-run"])
    assert result.exit_code != 0
    assert "cluster.gpus" in str(result.exception)


def test_submitit_local_trains_every_entry_and_status_and_collect_read_the_run_folders(
    small_simulation: Path, tmp_path: Path
) -> None:
    # one entry, not scored: each array task is a fresh process (imports, data check, training)
    matrix = write_matrix(tmp_path, small_simulation, "[dna]", extra="evaluate: false\n")
    runner = CliRunner()
    # `matrix FILE` is `matrix run FILE`
    result = runner.invoke(app, ["matrix", str(matrix), "--executor", "submitit-local"])
    assert result.exit_code == 0, result.output
    settings, entries = load_matrix(matrix)
    out = summary_dir(matrix, settings, entries)
    (found,) = statuses(settings, entries, out)
    assert found.state == "finished" and found.steps == 2 and math.isfinite(found.val_mse)
    assert found.job_id == read_jobs(out)[job_key(entries[0].config.run_dir())] != ""
    (out / "summary.csv").unlink()
    result = runner.invoke(app, ["matrix", "collect", str(matrix)])
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader((out / "summary.csv").open())
    assert (row["organelle"], row["status"], row["steps"]) == ("dna", "finished", "2")
    assert float(row["best_val_mse"]) == found.val_mse
    assert (out / JOBS_FILE).is_file()


def test_status_shows_a_running_entry_with_its_job_and_a_failed_one_with_its_error(
    small_simulation: Path, tmp_path: Path
) -> None:
    import os

    matrix = write_matrix(tmp_path, small_simulation, "[dna, mitochondria]")
    settings, entries = load_matrix(matrix)
    dna, mitochondria = (entry.config.run_dir() for entry in entries)
    (mitochondria / "error.log").parent.mkdir(parents=True)
    (mitochondria / "error.log").write_text("Traceback ...\nRuntimeError: out of memory\n")
    (mitochondria / "logs").mkdir()
    (mitochondria / "logs" / "metrics.csv").write_text(
        "epoch,step,train_loss_step,val_mse\n0,3,,0.75\n0,4,0.5,\n"
    )
    holder = LockHolderProcess(dna, env={**os.environ, "SLURM_JOB_ID": "991"})
    try:
        result = CliRunner().invoke(app, ["matrix", "status", str(matrix)])
    finally:
        holder.stop()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("dna/r2/3to2d" in line and "running" in line and "991" in line for line in lines)
    assert any("mitochondria" in line and "failed" in line for line in lines)
    failed = statuses(settings, entries, tmp_path)[1]
    assert failed.state == "failed" and failed.error == "RuntimeError: out of memory"
    assert (failed.steps, failed.val_mse) == (3, 0.75)  # the last validation logged


@pytest.mark.slow
def test_matrix_export_exports_every_finished_entry_and_names_the_unfinished(
    small_simulation: Path, tmp_path: Path
) -> None:
    from sparsessp_bmz.training.matrix import run_entry

    matrix = write_matrix(tmp_path, small_simulation, "[dna, mitochondria]")
    settings, entries = load_matrix(matrix)
    assert run_entry(entries[0], settings).status == "trained"  # dna only
    packages = tmp_path / "packages"
    result = CliRunner().invoke(app, ["matrix", "export", str(matrix), "--out", str(packages)])
    assert result.exit_code == 0, result.output
    assert [p.name for p in packages.glob("*.zip")] == ["sparsessp-dna-r2-3to2d.zip"]
    assert "not finished, not exported: mitochondria/r2/3to2d" in result.output


def test_the_export_job_stays_a_cpu_job_when_its_section_changes_other_resources() -> None:
    from sparsessp_bmz.training.cluster import ClusterSettings

    cluster = ClusterSettings.model_validate(
        {"partition": "gpu", "gpus_per_task": 2, "export": {"mem_gb": 8}}
    )
    export = cluster.resources_for(None)
    assert (export.partition, export.gpus_per_task, export.mem_gb) == ("gpu", 0, 8)
    assert cluster.resources_for("3d").gpus_per_task == 2


def test_a_local_dry_run_prints_the_plan_trains_nothing_and_warns_about_the_data(
    small_simulation: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(small_simulation.read_text().replace(",dna,", ",golgi,"))
    matrix = write_matrix(tmp_path, bad, "[dna]")
    result = CliRunner().invoke(app, ["matrix", str(matrix), "--dry-run"], terminal_width=400)
    assert result.exit_code == 0, result.output
    _, entries = load_matrix(matrix)
    assert str(entries[0].config.run_dir()) in result.output and "pending" in result.output
    assert "warning:" in result.output and "dry run: nothing trained" in result.output
    assert not (tmp_path / "runs").exists()


def test_a_damaged_run_folder_is_one_invalid_entry_and_the_others_are_still_read(
    small_simulation: Path, tmp_path: Path
) -> None:
    matrix = write_matrix(
        tmp_path, small_simulation, "[dna, mitochondria]", extra="evaluate: false\n"
    )
    settings, entries = load_matrix(matrix)
    dna, mitochondria = (entry.config.run_dir() for entry in entries)
    dna.mkdir(parents=True)
    (dna / "done.json").write_text('{"budget": ')  # cut off by a full disk
    (mitochondria / "logs").mkdir(parents=True)
    (mitochondria / "logs" / "metrics.csv").write_text(
        "epoch,step,train_loss_step,val_mse\n0,3,,0.75\n0,4,,0.5\n0,x5,,0.2\n0,6,,0.1"
    )
    damaged, intact = statuses(settings, entries, tmp_path)
    assert damaged.state == "invalid" and "done.json" in damaged.error
    assert "\n" not in damaged.error
    assert (intact.state, intact.steps, intact.val_mse) == ("pending", 6, 0.1)
    (intact.entry.config.run_dir() / "logs" / "metrics.csv").write_text("step,val_mse\n4,0.5\n7,")
    assert statuses(settings, entries, tmp_path)[1].steps == 4  # the cut-off row is skipped
    result = CliRunner().invoke(app, ["matrix", "collect", str(matrix)])
    assert result.exit_code == 1, result.output  # the damaged entry counts as failed
    rows = list(csv.DictReader((summary_dir(matrix, settings, entries) / "summary.csv").open()))
    assert [(row["organelle"], row["status"]) for row in rows] == [
        ("dna", "failed"),
        ("mitochondria", "pending"),
    ]
    assert "done.json" in rows[0]["error"]


@pytest.mark.parametrize(
    ("cluster", "named"),
    [
        ("cluster: {sbatch: {job-name: x, account: lab}}", "may not set job-name"),
        ("cluster: {sbatch: {cpus_per_task: '64'}}", "may not set cpus_per_task"),
        ("cluster: {timeout_min: 2, signal_delay_s: 90}", "cluster.timeout_min (2 min)"),
        (
            "cluster: {topologies: {2d: {timeout_min: 1}}}",
            "cluster.topologies.2d.timeout_min (1 min)",
        ),
    ],
)
def test_cluster_settings_that_override_the_matrix_or_leave_no_time_to_checkpoint_are_refused(
    small_simulation: Path, tmp_path: Path, cluster: str, named: str
) -> None:
    matrix = write_matrix(tmp_path, small_simulation, "[dna]", extra=cluster + "\n")
    with pytest.raises(UserInputError, match=re.escape(named)):
        load_matrix(matrix)


def test_entries_whose_recorded_job_squeue_still_lists_are_not_submitted_again(
    small_simulation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix = write_matrix(tmp_path, small_simulation, "[dna, mitochondria]", extra=CLUSTER)
    settings, entries = load_matrix(matrix)
    dna = job_key(entries[0].config.run_dir())
    record_jobs(summary_dir(matrix, settings, entries), Submission([], {dna: "77_0"}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"  # SLURM's answer: job 77_0 still waits
    squeue.write_text("#!/bin/sh\necho 77_0\necho 78_3\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    done = submit_matrix(matrix, [], "slurm", dry_run=True)
    assert done.queued == {dna: "77_0"} and done.queue_known
    (plan,) = done.submission.arrays
    assert [entry.organelle for entry in plan.entries] == ["mitochondria"]
    squeue.write_text("#!/bin/sh\nexit 1\n")  # squeue cannot answer: submitted, and said so
    done = submit_matrix(matrix, [], "slurm", dry_run=True)
    assert not done.queued and not done.queue_known
    assert len(done.submission.arrays[0].entries) == 2
