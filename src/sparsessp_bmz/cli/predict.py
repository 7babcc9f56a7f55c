"""`sparsessp-bmz predict`: TL z-stacks in, dense fluorescence predictions (OME-TIFF or OME-Zarr)
out, from a training checkpoint or a SparseSSP bioimage.io package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def predict(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            help="Trained checkpoint (.ckpt) or SparseSSP bioimage.io package (folder, .zip or "
            "rdf.yaml).",
        ),
    ],
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            help="TL z-stacks (TIFF, OME-TIFF, CZI, OME-Zarr): files, folders, globs "
            "('plate/*.czi') or a manifest CSV.",
        ),
    ],
    output: Annotated[
        str,  # a str, not a Path: a trailing / (write into this folder) must survive
        typer.Argument(
            metavar="OUTPUT",
            help="One input: the prediction to write (.ome.tif or .ome.zarr, float32). Several "
            "inputs, a folder, a glob or OUTPUT ending in /: the folder that gets one prediction "
            "per input, named after it.",
        ),
    ],
    channel: Annotated[int, typer.Option(help="Channel of INPUT holding the TL.")] = 0,
    dense: Annotated[
        bool,
        typer.Option(
            "--dense",
            help="INPUT is a dense stack on the model's grid: keep every r-th slice from --phase.",
        ),
    ] = False,
    phase: Annotated[
        int | None,
        typer.Option(help="First slice kept when subsampling a dense stack (implies --dense)."),
    ] = None,
    ratio: Annotated[
        int | None,
        typer.Option(
            help="Check: the sparsity ratio you expect; must equal the model's (implies --dense)."
        ),
    ] = None,
    overlap: Annotated[
        float | None,
        typer.Option(
            help="Window overlap per axis, in [0, 1) (default: the measured plan, see README)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 1,
    window: Annotated[
        str | None,
        typer.Option(
            help="Window DxHxW in target voxels (default: training depth, y/x up to 4x the "
            "training patch, fitted to the field)."
        ),
    ] = None,
    voxel_size: Annotated[
        str | None,
        typer.Option(
            help="Voxel size ZxYxX (um) of INPUT if the file records none "
            "(default: the model grid, z times r for a sparse stack)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")] = "cpu",
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            "--weights",
            help="How the network runs: onnx, torchscript (frozen graph), eager or bf16. "
            "Default: onnx for a checkpoint, the package's own torchscript for a package "
            "(onnx: the package's ONNX weights).",
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Folder outputs: ome-tiff or ome-zarr (default: OME-Zarr for OME-Zarr inputs, "
            "else OME-TIFF).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="CPU threads (default: torch's, one per physical core)."),
    ] = None,
    time: Annotated[
        int | None,
        typer.Option(help="Time point of INPUT to predict (needed when it holds several)."),
    ] = None,
    memory_limit: Annotated[
        float | None,
        typer.Option(
            metavar="GB",
            help="Largest memory one volume may take (default: SPARSESSP_MEMORY_LIMIT_GB, "
            "else half of the memory available now).",
        ),
    ] = None,
) -> None:
    """Predict the dense fluorescence of the model's structure from sparse (or dense) TL stacks.

    A sparse INPUT holds the acquired slices only (z spacing r times the model's); the output has
    r times as many slices. With --dense (or --phase/--ratio) INPUT is a full stack, subsampled on
    the model's grid first, so the prediction can be compared with a ground truth. With several
    inputs, finished outputs are skipped, a failing file does not stop the others, and the exit
    code is 1 if any failed.
    """
    from sparsessp_bmz.errors import UserInputError
    from sparsessp_bmz.guards import memory_limit_option
    from sparsessp_bmz.predict import ENGINES, resolve_device
    from sparsessp_bmz.predict.batch import OUTPUT_FORMATS

    # everything the user can get wrong is checked before the model is even loaded
    if overlap is not None and not 0 <= overlap < 1:
        raise UserInputError(f"--overlap must be in [0, 1) (0.5: half a window), got {overlap:g}")
    if batch_size < 1:
        raise UserInputError(f"--batch-size must be at least 1, got {batch_size}")
    if engine is not None and engine not in ENGINES:
        raise UserInputError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        formats = ", ".join(OUTPUT_FORMATS)
        raise UserInputError(f"--format {output_format!r} is not one of {formats}")
    if threads is not None and threads < 1:
        raise UserInputError(f"--threads must be at least 1, got {threads}")
    resolve_device(device)
    with memory_limit_option(memory_limit):
        _predict(
            model,
            inputs,
            output,
            channel=channel,
            dense=dense,
            phase=phase,
            ratio=ratio,
            overlap=overlap,
            batch_size=batch_size,
            window=window,
            voxel_size=voxel_size,
            device=device,
            engine=engine,
            output_format=output_format,
            threads=threads,
            time=time,
        )


def _single_output(inputs: list[str], output: str) -> bool:
    """One input and an OUTPUT that names an image (or no folder to fill): today's
    `predict CKPT INPUT OUTPUT`. A folder, glob or manifest with an OUTPUT folder is many."""
    import glob

    from sparsessp_bmz.imageio import OUTPUT_SUFFIXES

    if len(inputs) != 1 or output.endswith(("/", "\\")):
        return False
    if Path(output).name.lower().endswith(OUTPUT_SUFFIXES):
        return True
    only = Path(inputs[0])
    if only.suffix.lower() == ".csv" or (glob.has_magic(inputs[0]) and not only.exists()):
        return False
    return not only.is_dir()


def _predict(
    model_path: Path,
    inputs: list[str],
    output_text: str,
    *,
    channel: int,
    dense: bool,
    phase: int | None,
    ratio: int | None,
    overlap: float | None,
    batch_size: int,
    window: str | None,
    voxel_size: str | None,
    device: str,
    engine: str | None,
    output_format: str | None,
    threads: int | None,
    time: int | None,
) -> None:
    import torch
    from rich.console import Console

    from sparsessp_bmz.cli.parsing import parse_shape
    from sparsessp_bmz.errors import UserInputError
    from sparsessp_bmz.imageio import check_output_path, check_outputs_spare_inputs
    from sparsessp_bmz.predict.batch import (
        Job,
        PredictOptions,
        Runners,
        expand_inputs,
        plan_jobs,
        predict_file,
        predict_jobs,
        progress_bars,
    )
    from sparsessp_bmz.predict.defaults import DEFAULT_ENGINE, DEFAULT_OVERLAP
    from sparsessp_bmz.predict.models import is_package, load_model

    console = Console(stderr=True)
    window_shape = None if window is None else parse_shape(window, "--window")
    fallback = None if voxel_size is None else _parse_voxel(voxel_size)
    role = "package" if is_package(model_path) else "checkpoint"
    single = _single_output(inputs, output_text)
    output = Path(output_text)
    if single:
        check_output_path(output, {"INPUT": Path(inputs[0]), role: model_path})
        if not Path(inputs[0]).exists():
            raise UserInputError(f"input {inputs[0]} does not exist; give the path of a TL z-stack")
        jobs = [Job(Path(inputs[0]), channel, output)]
    else:
        found = expand_inputs(inputs, channel)
        jobs = plan_jobs(found, output, output_format)  # type: ignore[arg-type]
        for job in jobs:
            check_output_path(job.output, {"INPUT": job.input, role: model_path})
        # an output may be any input (an OUT folder holding inputs), not only its own
        check_outputs_spare_inputs([job.output for job in jobs], [source for source, _ in found])
    if threads is not None:
        torch.set_num_threads(threads)
    model = load_model(model_path)
    spec = model.trained.spec
    if ratio is not None and ratio != spec.ratio:
        raise UserInputError(
            f"--ratio {ratio} differs from the model's sparsity ratio r={spec.ratio} "
            f"({spec.model_id}); a dense stack is always subsampled with the model's ratio: "
            f"drop --ratio or use an r={ratio} model"
        )
    options = PredictOptions(
        dense_phase=(phase or 0) if (dense or phase is not None or ratio is not None) else None,
        overlap=DEFAULT_OVERLAP if overlap is None else overlap,
        batch_size=batch_size,
        window=window_shape,
        voxel_size_um=fallback,
        device=device,
        engine=engine or model.default_engine(DEFAULT_ENGINE),  # type: ignore[arg-type]
        time=time,
    )
    if single:
        job = jobs[0]
        model.check_engine(options.engine, options.device)
        runners = Runners(model, options)
        with runners.stack, progress_bars(True, 1) as (next_file, on_plan, advance):
            next_file(job.input.name)
            done = predict_file(model, job, options, runners, on_plan=on_plan, advance=advance)
        if done.resampled:
            console.print(
                f"[yellow]note:[/] {job.input.name} was resampled to the model's grid "
                f"(target voxels {model.trained.voxel_size_um} um, sparse z step x{spec.ratio})"
            )
        z, y, x = done.voxel_size_um
        console.print(
            f"{spec.model_id}: {job.input.name} -> {job.output} "
            f"{'x'.join(map(str, done.shape))} at {z:g}x{y:g}x{x:g} um ({options.engine})"
        )
        return
    outcomes = predict_jobs(model, jobs, options, progress=True)
    _summary(console, outcomes)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def _summary(console, outcomes) -> None:  # type: ignore[no-untyped-def]
    """One line per file (written, skipped or failed, and why), then the counts."""
    from rich.markup import escape

    style = {"written": "green", "skipped": "yellow", "failed": "bold red"}
    for o in outcomes:
        took = f" in {o.seconds:.1f} s" if o.status == "written" else ""
        console.print(
            f"[{style[o.status]}]{o.status}[/] {escape(str(o.job.input))} -> "
            f"{escape(str(o.job.output))}{took}: {escape(o.detail)}",
            highlight=False,
        )
    counts = {s: sum(o.status == s for o in outcomes) for s in style}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()))


def _parse_voxel(text: str) -> tuple[float, float, float]:
    """'0.29x0.108x0.108' -> (0.29, 0.108, 0.108), in micrometres."""
    from sparsessp_bmz.errors import UserInputError
    from sparsessp_bmz.guards import check_voxel_size

    try:
        sizes = tuple(float(part) for part in text.lower().split("x"))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or min(sizes) <= 0:
        raise UserInputError(
            f"--voxel-size must look like ZxYxX with positive sizes in um, got {text!r}"
        )
    check_voxel_size(sizes, f"--voxel-size {text}", "give the sizes in micrometres")
    return sizes  # type: ignore[return-value]
