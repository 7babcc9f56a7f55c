"""`sparsessp-bmz predict`: a whole TL z-stack in, a dense fluorescence OME-TIFF out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def predict(
    checkpoint: Annotated[Path, typer.Argument(help="Trained checkpoint (.ckpt).")],
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT", help="TL z-stack: TIFF, OME-TIFF, CZI, OME-Zarr.")
    ],
    output: Annotated[Path, typer.Argument(help="Prediction to write (OME-TIFF, float32).")],
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
    overlap: Annotated[float, typer.Option(help="Window overlap per axis, in [0, 1).")] = 0.5,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 4,
    window: Annotated[
        str | None, typer.Option(help="Window DxHxW in target voxels (default: training patch).")
    ] = None,
    voxel_size: Annotated[
        str | None,
        typer.Option(
            help="Voxel size ZxYxX (um) of INPUT if the file records none "
            "(default: the model grid, z times r for a sparse stack)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")] = "cpu",
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
    """Predict the dense fluorescence of the model's structure from a sparse (or dense) TL stack.

    A sparse INPUT holds the acquired slices only (z spacing r times the model's); the output has
    r times as many slices. With --dense (or --phase/--ratio) INPUT is a full stack, subsampled on
    the model's grid first, so the prediction can be compared with a ground truth.
    """
    from sparsessp_bmz.errors import UserInputError
    from sparsessp_bmz.guards import memory_limit_option
    from sparsessp_bmz.imageio import check_output_path
    from sparsessp_bmz.predict import resolve_device

    # everything the user can get wrong is checked before the checkpoint is even loaded
    if not 0 <= overlap < 1:
        raise UserInputError(f"--overlap must be in [0, 1) (0.5: half a window), got {overlap:g}")
    if batch_size < 1:
        raise UserInputError(f"--batch-size must be at least 1, got {batch_size}")
    resolve_device(device)
    check_output_path(output, {"INPUT": input_path, "checkpoint": checkpoint})
    with memory_limit_option(memory_limit):
        _predict(
            checkpoint,
            input_path,
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
            time=time,
        )


def _predict(
    checkpoint: Path,
    input_path: Path,
    output: Path,
    *,
    channel: int,
    dense: bool,
    phase: int | None,
    ratio: int | None,
    overlap: float,
    batch_size: int,
    window: str | None,
    voxel_size: str | None,
    device: str,
    time: int | None,
) -> None:
    from rich.console import Console

    from sparsessp_bmz.cli.parsing import parse_shape
    from sparsessp_bmz.errors import UserInputError
    from sparsessp_bmz.imageio import read_prediction_input, write_ome_tiff
    from sparsessp_bmz.predict import predict_volume
    from sparsessp_bmz.training.checkpoint import load_trained

    console = Console(stderr=True)
    window_shape = None if window is None else parse_shape(window, "--window")
    fallback = None if voxel_size is None else _parse_voxel(voxel_size)
    if not input_path.exists():
        raise UserInputError(f"input {input_path} does not exist; give the path of a TL z-stack")
    trained = load_trained(checkpoint)
    spec = trained.spec
    if ratio is not None and ratio != spec.ratio:
        raise UserInputError(
            f"--ratio {ratio} differs from the model's sparsity ratio r={spec.ratio} "
            f"({spec.model_id}); a dense stack is always subsampled with the model's ratio: "
            f"drop --ratio or use an r={ratio} model"
        )
    dense_phase = (phase or 0) if (dense or phase is not None or ratio is not None) else None
    prepared = read_prediction_input(
        input_path,
        ratio=spec.ratio,
        model_voxel_size_um=trained.voxel_size_um,
        channel=channel,
        dense_phase=dense_phase,
        fallback_voxel_size_um=fallback,
        time=time,
    )
    if prepared.resampled:
        console.print(
            f"[yellow]note:[/] {input_path.name} was resampled to the model's grid "
            f"(target voxels {trained.voxel_size_um} um, sparse z step x{spec.ratio})"
        )
    prediction = predict_volume(
        trained.net,
        spec,
        prepared.sparse,
        overlap=overlap,
        batch_size=batch_size,
        window=window_shape,
        device=device,
        progress=True,
    )
    write_ome_tiff(output, prediction, prepared.output_voxel_size_um)
    z, y, x = prepared.output_voxel_size_um
    console.print(
        f"{spec.model_id}: {prepared.sparse.shape[0]} sparse slices -> {output} "
        f"{'x'.join(map(str, prediction.shape))} at {z:g}x{y:g}x{x:g} um"
    )


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
