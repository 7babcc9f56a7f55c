"""Where the matrix entries run: in this process, or as submitit jobs (SLURM, or local processes).

- `local`: every entry in turn in this process (`matrix.run_matrix`), the default.
- `slurm`: one SLURM array job per set of resources (`ClusterSettings.resources_for`: entries of
  a topology with an override form their own array), one array task per unfinished entry,
  submitted through submitit. Each task runs `run_entry_job`, which is `run_entry`: exactly what
  the local executor runs for that entry (train, then score).
- `submitit-local`: the same submission through submitit's LocalExecutor (each task a local
  process, all at once, waited for): a test and debugging executor for the SLURM path on a
  machine without SLURM.

The job ids of a submission are kept in SUMMARY_DIR/jobs.json (`matrix status` shows them). A
dry run prints the sbatch script of each array (submitit's own script builder) and what each task
trains, and submits nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sparsessp_bmz.data.atomic import write_text
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.cluster import ClusterSettings, Resources
from sparsessp_bmz.training.matrix import Entry, MatrixSettings, run_entry
from sparsessp_bmz.training.matrix_export import ExportRequest, MatrixExport, export_matrix
from sparsessp_bmz.training.matrix_summary import EntryResult

ExecutorName = Literal["local", "submitit-local", "slurm"]
JOBS_FILE = "jobs.json"


def job_key(run_dir: Path) -> str:
    """A run folder as jobs.json names it: absolute, so `matrix status` run from another folder
    finds the jobs a submission recorded."""
    return str(run_dir.absolute())


@dataclass(frozen=True)
class ArrayPlan:
    """One array job: the entries that share a set of resources, in task order."""

    name: str
    resources: Resources
    entries: tuple[Entry, ...]


@dataclass
class Submission:
    """What a submission sent: the plan, and per run folder its job id (empty in a dry run)."""

    arrays: list[ArrayPlan]
    job_ids: dict[str, str] = field(default_factory=dict)
    export_job_id: str | None = None
    scripts: list[str] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)


def run_entry_job(entry: Entry, settings: MatrixSettings) -> EntryResult:
    """One array task: `run_entry`. A preempted run (already requeued) exits without a result,
    so submitit waits for the requeued task's result instead of reporting this one.

    The warning signal is caught for the whole task: outside training (data checks, scoring) it
    must not kill the task, whose scores are then still written if the time limit allows.
    """
    from rich.console import Console

    from sparsessp_bmz.training.preemption import exit_when_preempted, preemption_guard

    with preemption_guard(), exit_when_preempted(Console(stderr=True)):
        return run_entry(entry, settings, max_requeues=settings.cluster.max_requeues)


def plan_arrays(entries: Sequence[Entry], cluster: ClusterSettings, prefix: str) -> list[ArrayPlan]:
    """Entries grouped by the resources their topology asks for, in matrix order."""
    groups: dict[Resources, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(cluster.resources_for(entry.topology), []).append(entry)
    plans = []
    for resources, members in groups.items():
        topologies = sorted({entry.topology for entry in members})
        name = f"{prefix}-{'-'.join(topologies)}" if len(groups) > 1 else prefix
        plans.append(ArrayPlan(name, resources, tuple(members)))
    return plans


def _slurm_executor(cluster: ClusterSettings, folder: Path) -> Any:
    import submitit

    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise UserInputError(
            "--executor slurm needs SLURM's sbatch and srun on this machine (run it on the "
            "cluster's login node); --dry-run prints what would be submitted anywhere"
        )
    return submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=cluster.max_requeues)


@contextlib.contextmanager
def _sbatch_errors(name: str) -> Iterator[None]:
    """sbatch refusing a job (unknown partition or account, resources no node has) is the
    user's to fix: one line with sbatch's own reason."""
    from submitit.core.utils import FailedJobError

    try:
        yield
    except FailedJobError as err:
        lines = [line for line in str(err).splitlines() if line.strip()] or ["no reason given"]
        raise UserInputError(
            f"sbatch refused {name}: {lines[-1].strip()}; fix the cluster: section of the matrix "
            f"file (partition, sbatch options, resources) and submit again"
        ) from err


def _local_executor(folder: Path) -> Any:
    import submitit

    return submitit.LocalExecutor(folder=folder / "%j")


def job_folder(path: Path, settings: MatrixSettings, entries: Sequence[Entry]) -> Path:
    """Where submitit keeps a matrix's job files and logs (absolute, as submitit keeps it)."""
    from sparsessp_bmz.training.matrix import summary_dir

    return (
        settings.cluster.log_dir or summary_dir(path, settings, list(entries)) / "slurm"
    ).absolute()


def dry_run_script(cluster: ClusterSettings, plan: ArrayPlan, folder: Path) -> str:
    """The sbatch script submitit would write for `plan`, by submitit's own builder.

    `_make_sbatch_string` and the `python -u -m submitit.core._submit FOLDER` command are what
    `SlurmExecutor` uses (`submitit/slurm/slurm.py`: `_make_submission_file_text`,
    `_submitit_command_str`); the executor itself cannot be made where `srun` is missing.
    """
    from submitit.slurm.slurm import _make_sbatch_string

    job_folder = folder / "%j"
    python = shlex.quote(sys.executable)
    command = f"{python} -u -m submitit.core._submit {shlex.quote(str(job_folder))}"
    parameters = cluster.slurm_parameters(plan.resources, plan.name)
    count = len(plan.entries)
    return _make_sbatch_string(
        command=command, folder=job_folder, map_count=count if count > 1 else None, **parameters
    )


def submit(
    settings: MatrixSettings,
    entries: Sequence[Entry],
    executor: ExecutorName,
    log_dir: Path,
    prefix: str,
    dry_run: bool = False,
) -> Submission:
    """Submit one array task per entry through submitit (`slurm` or `submitit-local`)."""
    cluster = settings.cluster
    plans = plan_arrays(entries, cluster, prefix)
    submission = Submission(plans)
    for plan in plans:
        if dry_run:
            submission.scripts.append(dry_run_script(cluster, plan, log_dir))
            continue
        if executor == "slurm":
            pool = _slurm_executor(cluster, log_dir)
            pool.update_parameters(**cluster.slurm_parameters(plan.resources, plan.name))
        else:
            pool = _local_executor(log_dir)
            pool.update_parameters(timeout_min=plan.resources.timeout_min)
        with _sbatch_errors(f"array {plan.name}"):
            jobs = pool.map_array(run_entry_job, list(plan.entries), [settings] * len(plan.entries))
        for entry, job in zip(plan.entries, jobs, strict=True):
            assert entry.config is not None
            submission.job_ids[job_key(entry.config.run_dir())] = str(job.job_id)
        submission.jobs += jobs
    return submission


def submit_export(
    cluster: ClusterSettings,
    executor: ExecutorName,
    log_dir: Path,
    name: str,
    task: Callable[[], Any],
    after: Sequence[str] = (),
) -> Any:
    """One job running `task` (a matrix export), started when the jobs `after` ended in any way
    (sbatch --dependency=afterany: a failed entry must not keep the others from being exported)."""
    resources = cluster.resources_for(None)
    if executor == "slurm":
        pool = _slurm_executor(cluster, log_dir)
        parameters = cluster.slurm_parameters(resources, name)
        if after:
            array_ids = sorted({job_id.split("_")[0] for job_id in after})
            parameters["dependency"] = "afterany:" + ":".join(array_ids)
        pool.update_parameters(**parameters)
    else:
        pool = _local_executor(log_dir)  # runs at once: the caller waited for the entries
        pool.update_parameters(timeout_min=resources.timeout_min)
    with _sbatch_errors(f"job {name}"):
        return pool.submit(task)


def record_jobs(out: Path, submission: Submission) -> None:
    """SUMMARY_DIR/jobs.json: run folder -> job id of the latest submission (merged into the
    earlier ones, so entries submitted before keep theirs)."""
    path = out / JOBS_FILE
    known = read_jobs(out)
    known.update(submission.job_ids)
    payload: dict[str, Any] = {"entries": known}
    if submission.export_job_id is not None:
        payload["export"] = submission.export_job_id
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_jobs(out: Path) -> dict[str, str]:
    """Run folder -> job id, as the latest submissions recorded it (empty when none)."""
    path = out / JOBS_FILE
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    entries = loaded.get("entries") if isinstance(loaded, dict) else None
    return {str(k): str(v) for k, v in entries.items()} if isinstance(entries, dict) else {}


def queued_jobs() -> set[str] | None:
    """The ids of SLURM's pending and running jobs, array tasks one by one as `123_4` (None:
    squeue is not there or failed, so it cannot be known)."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        listed = subprocess.run(
            [squeue, "--noheader", "--array", "--format=%i"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {line.strip() for line in listed.stdout.splitlines() if line.strip()}


@dataclass
class MatrixSubmission:
    """A matrix handed to submitit: what was submitted, what was left out, where it reports."""

    out: Path
    log_dir: Path
    submission: Submission
    running: list[Entry]
    #: Entries whose recorded job (jobs.json) SLURM still lists as pending or running: job id.
    queued: dict[str, str] = field(default_factory=dict)
    #: Whether squeue could be asked (False: entries of an earlier submission may be sent again).
    queue_known: bool = True
    rows: list[EntryResult] | None = None
    export: MatrixExport | None = None
    #: A dry run's data check, as a warning (a real submission refuses bad data instead).
    data_problem: str | None = None


def submit_matrix(
    path: Path,
    overrides: Sequence[str],
    executor: ExecutorName,
    *,
    dry_run: bool = False,
    wait: bool = False,
    export: ExportRequest | None = None,
) -> MatrixSubmission:
    """Submit every unfinished entry of a matrix (one array task each) through submitit.

    The data of every entry is checked first (`check_matrix_data`), as the local executor does;
    a dry run reports a problem in `data_problem` instead of refusing.
    Entries another process trains now (their lock is held) are not submitted again, nor (on
    SLURM) those whose recorded job squeue still lists. `export`
    adds one job that exports the finished entries once the arrays ended (afterany). With `wait`
    (always for `submitit-local`), the jobs are waited for and the summary is rebuilt from the
    run folders (`matrix_status.collect`), as `matrix collect` does.
    """
    from sparsessp_bmz.training.matrix import (
        check_matrix_data,
        data_problem,
        load_matrix,
        summary_dir,
    )
    from sparsessp_bmz.training.matrix_status import collect
    from sparsessp_bmz.training.run import is_finished
    from sparsessp_bmz.training.run_lock import current_holder

    settings, entries = load_matrix(path, list(overrides))
    problem = data_problem(settings, entries) if dry_run else None
    if not dry_run:
        check_matrix_data(settings, entries)
    out = summary_dir(path, settings, entries)
    log_dir = job_folder(path, settings, entries)
    recorded = read_jobs(out)
    listed = queued_jobs() if executor == "slurm" and recorded else set()
    todo, running, queued = [], [], {}
    for entry in entries:
        if entry.config is None or is_finished(entry.config):
            continue
        job = recorded.get(job_key(entry.config.run_dir()))
        if current_holder(entry.config.run_dir()):
            running.append(entry)
        elif listed is not None and job in listed:
            queued[job_key(entry.config.run_dir())] = job
        else:
            todo.append(entry)
    prefix = f"sparsessp-{Path(path).stem}"
    submission = submit(settings, todo, executor, log_dir, prefix, dry_run=dry_run)
    result = MatrixSubmission(
        out, log_dir, submission, running, queued, listed is not None, data_problem=problem
    )
    if dry_run:
        return result
    record_jobs(out, submission)
    local = executor == "submitit-local"

    def export_job(after: Sequence[str] = ()) -> Any:
        task = functools.partial(export_matrix, export)
        return submit_export(settings.cluster, executor, log_dir, f"{prefix}-export", task, after)

    if export is not None and not local:
        job = export_job(after=list(submission.job_ids.values()))
        submission.export_job_id = str(job.job_id)
        submission.jobs.append(job)
        record_jobs(out, submission)
    if wait or local:
        for job in submission.jobs:
            with contextlib.suppress(Exception):  # a job's failure is in its run folder
                outcome = job.result()
                if isinstance(outcome, MatrixExport):
                    result.export = outcome
        if export is not None and local:  # after the entries: LocalExecutor has no dependencies
            result.export = export_job().result()
        result.rows = collect(path, settings, entries)[0]
    return result
