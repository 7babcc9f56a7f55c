"""`sparsessp-bmz matrix`: train, follow, collect and export a model matrix (here or on SLURM).

`matrix FILE` is `matrix run FILE` (the form the demo and the README use); `status`, `collect`
and `export` read the run folders the entries write.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from sparsessp_bmz.cli.options import Verbose

if TYPE_CHECKING:  # the CLI imports the training modules only when a command runs them
    from sparsessp_bmz.training.matrix import Entry
    from sparsessp_bmz.training.matrix_export import ExportRequest, MatrixExport
    from sparsessp_bmz.training.matrix_summary import EntryResult


class _RunByDefault(TyperGroup):
    """A group whose first argument, when it is no sub-command, goes to `run`.

    Why not a callback with `invoke_without_command`: a group's own positional argument would
    swallow the sub-command name (`matrix status FILE` would read `status` as the file).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


matrix_app = typer.Typer(
    cls=_RunByDefault,
    no_args_is_help=True,
    help="Train and score a model matrix (organelles x ratios x topologies), here or on SLURM. "
    "`matrix FILE [OVERRIDES] [--executor local|slurm|submitit-local] [--verbose]` is short for "
    "`matrix run FILE ...` (options: `matrix run --help`).",
)


def register(app: typer.Typer) -> None:
    app.add_typer(matrix_app, name="matrix")


File = Annotated[Path, typer.Argument(help="Matrix definition, e.g. training/matrix.yaml.")]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Dotted overrides for every entry, e.g. data.manifest=/data/m.csv."),
]


class ExecutorChoice(str, Enum):
    """Where entries run (`training.executors`)."""

    local = "local"
    slurm = "slurm"
    submitit_local = "submitit-local"


Executor = Annotated[
    ExecutorChoice,
    typer.Option(
        help="local: every entry in turn in this process. slurm: one SLURM array task per "
        "unfinished entry through submitit (resources: the file's cluster: section). "
        "submitit-local: the slurm path with local processes (for tests and debugging).",
    ),
]
Out = Annotated[Path, typer.Option(help="Folder of packages (as `export --out`).")]
Variants = Annotated[str | None, typer.Option(help="Package variants (as `export --variants`).")]
Metadata = Annotated[
    Path | None, typer.Option(help="Publisher metadata YAML (as `export --metadata`).")
]


def _export_request(
    file: Path, overrides: list[str] | None, out: Path, variants: str | None, metadata: Path | None
) -> ExportRequest:
    from sparsessp_bmz.training.matrix_export import ExportRequest

    return ExportRequest(file, tuple(overrides or ()), out, variants, metadata)


@matrix_app.command("run")
def run(
    file: File,
    overrides: Overrides = None,
    executor: Executor = ExecutorChoice.local,
    dry_run: Annotated[
        bool,
        typer.Option(
            help="Print the plan (entries, run folders, finished/pending; on slurm also the "
            "sbatch scripts and tasks), warn about data problems; train and submit nothing."
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(help="slurm: wait for the jobs, then write the summary (local always waits)."),
    ] = False,
    export: Annotated[
        bool,
        typer.Option(
            help="Then export every finished entry (on SLURM: a job after the arrays end)."
        ),
    ] = False,
    out: Out = Path("packages"),
    variants: Variants = None,
    metadata: Metadata = None,
    verbose: Verbose = False,
) -> None:
    """Train, then score on whole test volumes, every entry; skip finished ones; one summary.

    A crashing entry is logged to its run folder (error.log) and marked failed; the rest go on.
    An entry another process trains now is "running elsewhere" (not failed, left alone).
    Re-run the command to retry failed and unfinished entries. With --executor slurm the command
    returns once the arrays are submitted: follow them with `matrix status`, then `matrix
    collect` writes the summary.
    """
    from rich.console import Console

    from sparsessp_bmz.training.preemption import exit_when_preempted
    from sparsessp_bmz.training.progress import verbose_console

    console = Console()
    request = _export_request(file, overrides, out, variants, metadata) if export else None
    if executor is not ExecutorChoice.local:
        _submit(console, file, overrides or [], executor.value, dry_run, wait, request)
        return
    if dry_run:
        _print_plan(console, file, overrides or [])
        return
    from sparsessp_bmz.training.matrix import run_matrix

    def announce(entry: Entry, index: int, total: int) -> None:
        name = f"{entry.organelle} r={entry.ratio} {entry.topology}"
        console.rule(f"[bold]{index + 1}/{total}[/] {name}")

    with verbose_console(verbose), exit_when_preempted(console):
        rows, summary = run_matrix(file, overrides or [], announce)
    failed = _print_summary(console, rows, summary)
    if request is not None:
        failed += _print_export(console, _run_export(console, request))
    if failed:
        raise typer.Exit(1)


def _print_plan(console: Console, file: Path, overrides: list[str]) -> None:
    """The local dry run: each entry's run folder and state, then data problems as warnings."""
    from sparsessp_bmz.training.matrix import data_problem, load_matrix, summary_dir
    from sparsessp_bmz.training.matrix_status import statuses

    settings, entries = load_matrix(file, overrides)
    console.rule(f"[bold]plan[/] {file}: {len(entries)} entries")
    for item in statuses(settings, entries, summary_dir(file, settings, entries)):
        where = item.error if item.entry.config is None else item.entry.config.run_dir()
        console.print(f"  {item.state:<8} {item.name}  {where}", highlight=False, soft_wrap=True)
    _print_data_problem(console, data_problem(settings, entries))
    console.print("dry run: nothing trained")


def _print_data_problem(console: Console, problem: str | None) -> None:
    if problem is not None:
        console.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)


def _submit(
    console: Console,
    file: Path,
    overrides: list[str],
    executor: str,
    dry_run: bool,
    wait: bool,
    request: ExportRequest | None,
) -> None:
    from sparsessp_bmz.training.executors import job_key, submit_matrix

    with console.status(f"submitting through submitit ({executor})"):
        done = submit_matrix(
            file,
            overrides,
            executor,
            dry_run=dry_run,
            wait=wait,
            export=request,
        )
    for entry in done.running:
        console.print(f"running elsewhere, not submitted: {entry.config.run_dir()}")
    for run_dir, job in done.queued.items():
        console.print(f"queued or running as job {job}, not submitted: {run_dir}", highlight=False)
    if not done.queue_known:
        console.print(
            "[yellow]warning:[/] squeue could not be asked whether earlier jobs of these entries "
            "still wait; an entry submitted twice trains once (its run lock refuses the other)"
        )
    if not done.submission.arrays:
        console.print("every entry is finished or running; nothing submitted")
    for index, plan in enumerate(done.submission.arrays):
        console.rule(f"[bold]array {plan.name}[/]: {len(plan.entries)} tasks")
        for task, entry in enumerate(plan.entries):
            run_dir = entry.config.run_dir()
            job = done.submission.job_ids.get(job_key(run_dir), "")
            console.print(f"  task {task} {job}  {run_dir}", highlight=False, soft_wrap=True)
        if dry_run:
            script = done.submission.scripts[index]
            console.print(script, highlight=False, markup=False, soft_wrap=True)
    if dry_run:
        _print_data_problem(console, done.data_problem)
        console.print("dry run: nothing submitted")
        return
    if done.submission.export_job_id:
        console.print(f"export job {done.submission.export_job_id} starts after the arrays end")
    console.print(f"job files and logs: {done.log_dir}", highlight=False, soft_wrap=True)
    if done.rows is None:
        console.print(f"follow with: sparsessp-bmz matrix status {file}; then matrix collect")
        return
    failed = _print_summary(console, done.rows, done.out)
    if done.export is not None:
        failed += _print_export(console, done.export)
    if failed:
        raise typer.Exit(1)


def _print_summary(console: Console, rows: list[EntryResult], out: Path) -> int:
    """The summary table; how many entries failed."""
    from sparsessp_bmz.training.matrix_summary import summary_table

    console.print(summary_table(rows))
    console.print(f"summary: {out / 'summary.csv'} and {out / 'summary.md'}", highlight=False)
    failed = sum(row.status == "failed" for row in rows)
    if failed:
        console.print(
            f"[red]{failed} of {len(rows)} entries failed[/]; see error.log in their runs"
        )
    return failed


@matrix_app.command("status")
def status(file: File, overrides: Overrides = None) -> None:
    """Each entry: pending / running (with its job) / finished / failed, and its last
    validation MSE, read from the run folders."""
    from rich.console import Console
    from rich.table import Table

    from sparsessp_bmz.training.matrix import load_matrix, summary_dir
    from sparsessp_bmz.training.matrix_status import statuses

    settings, entries = load_matrix(file, overrides or [])
    found = statuses(settings, entries, summary_dir(file, settings, entries))
    colours = {"finished": "green", "running": "cyan", "failed": "red", "invalid": "red"}
    table = Table(title=f"{file}")
    for name in ("entry", "state", "job", "step", "val MSE", "error"):
        table.add_column(name)
    for item in found:
        colour = colours.get(item.state, "yellow")
        table.add_row(
            item.name,
            f"[{colour}]{item.state}[/]",
            item.job_id,
            "" if item.steps is None else str(item.steps),
            "" if item.val_mse != item.val_mse else f"{item.val_mse:.4f}",
            item.error,
        )
    console = Console()
    console.print(table)
    counts = {state: sum(i.state == state for i in found) for state in colours | {"pending": ""}}
    console.print(", ".join(f"{n} {state}" for state, n in counts.items() if n))


@matrix_app.command("collect")
def collect(file: File, overrides: Overrides = None) -> None:
    """Rebuild summary.csv/md from the run folders (after a SLURM array ended)."""
    from rich.console import Console

    from sparsessp_bmz.training.matrix import load_matrix
    from sparsessp_bmz.training.matrix_status import collect as collect_rows

    settings, entries = load_matrix(file, overrides or [])
    console = Console()
    with console.status("reading run folders (and scoring finished entries not scored yet)"):
        rows, out = collect_rows(file, settings, entries)
    if _print_summary(console, rows, out):
        raise typer.Exit(1)


@matrix_app.command("export")
def export(
    file: File,
    overrides: Overrides = None,
    executor: Executor = ExecutorChoice.local,
    out: Out = Path("packages"),
    variants: Variants = None,
    metadata: Metadata = None,
) -> None:
    """Export and validate every finished entry (as `sparsessp-bmz export` does one checkpoint);
    with --executor slurm as one SLURM job."""
    from rich.console import Console

    console = Console()
    request = _export_request(file, overrides, out, variants, metadata)
    if executor is ExecutorChoice.local:
        if _print_export(console, _run_export(console, request)):
            raise typer.Exit(1)
        return
    import functools

    from sparsessp_bmz.training.executors import job_folder, submit_export
    from sparsessp_bmz.training.matrix import load_matrix
    from sparsessp_bmz.training.matrix_export import export_matrix

    settings, entries = load_matrix(file, overrides or [])
    log_dir = job_folder(file, settings, entries)
    task = functools.partial(export_matrix, request)
    name = f"sparsessp-{file.stem}-export"
    job = submit_export(settings.cluster, executor.value, log_dir, name, task)  # type: ignore[arg-type]
    if executor is ExecutorChoice.submitit_local:
        if _print_export(console, job.result()):
            raise typer.Exit(1)
        return
    console.print(f"export job {job.job_id}; logs in {log_dir}", highlight=False)


def _run_export(console: Console, request: ExportRequest) -> MatrixExport:
    from sparsessp_bmz.training.matrix_export import export_matrix

    with console.status("") as shown:
        return export_matrix(
            request, on_entry=lambda entry: shown.update(f"exporting {entry.config.model.model_id}")
        )


def _print_export(console: Console, done: MatrixExport) -> int:
    """One line per package; how many failed."""
    for archive in done.archives:
        console.print(f"[green]PASS[/] {archive}", highlight=False)
    for failure in done.failures:
        console.print(f"[bold red]FAIL[/] {failure}", highlight=False)
    if done.unfinished:
        console.print(f"not finished, not exported: {', '.join(done.unfinished)}")
    return len(done.failures)
