"""`sparsessp-bmz train`: train one model from a YAML preset; re-running resumes a killed run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sparsessp_bmz.cli.options import Verbose


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    config: Annotated[
        Path, typer.Argument(help="Training preset (YAML), e.g. training/demo.yaml.")
    ],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Dotted overrides, e.g. model.ratio=4 optim.max_steps=50."),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Train with Lightning: best (validation MSE) and last checkpoints, metrics CSV, resume.

    Running the same command again resumes from the run's last checkpoint, or says that the run
    already finished. A second process on the same run is refused while the first trains. On
    SIGUSR1 (SLURM's warning before the time limit) the run stops before its next step, requeues
    its SLURM job when there is one, and exits with status 75.
    """
    from lightning.pytorch.utilities import rank_zero_only
    from rich.console import Console

    from sparsessp_bmz.training.config import load_config
    from sparsessp_bmz.training.preemption import exit_when_preempted
    from sparsessp_bmz.training.progress import verbose_console
    from sparsessp_bmz.training.run import train as run_training

    settings = load_config(config, overrides or [])
    # DDP on one machine runs this command once per device: the other ranks train in silence
    console = Console(quiet=rank_zero_only.rank != 0)
    console.print(f"run folder: {settings.run_dir()}", highlight=False, soft_wrap=True)
    with verbose_console(verbose), exit_when_preempted(console):
        result = run_training(settings)
    if result.status == "already finished":
        console.print(
            f"[bold]{settings.model.model_id}[/] already finished ({result.global_step} steps); "
            f"nothing to do. Raise optim.max_steps/max_epochs to train further.",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"best validation MSE {result.best_val_mse:.4f} after {result.global_step} steps\n"
        f"best checkpoint {result.best_checkpoint}\nlast checkpoint {result.last_checkpoint}\n"
        f"metrics {result.metrics_csv}",
        highlight=False,
        soft_wrap=True,  # paths stay whole (and clickable) on narrow or non-terminal consoles
    )
