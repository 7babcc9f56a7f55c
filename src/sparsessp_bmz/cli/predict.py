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
) -> None:
    """Predict the dense fluorescence of the model's structure from a sparse (or dense) TL stack.

    A sparse INPUT holds the acquired slices only (z spacing r times the model's); the output has
    r times as many slices. With --dense (or --phase/--ratio) INPUT is a full stack, subsampled on
    the model's grid first, so the prediction can be compared with a ground truth.
    """
    from rich.console import Console

    from sparsessp_bmz.cli.parsing import parse_shape
    from sparsessp_bmz.errors import UserInputError
    from sparsessp_bmz.imageio import read_prediction_input, write_ome_tiff
    from sparsessp_bmz.predict import predict_volume
    from sparsessp_bmz.training.checkpoint import load_trained

    console = Console(stderr=True)
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
        fallback_voxel_size_um=None if voxel_size is None else _parse_voxel(voxel_size),
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
        window=None if window is None else parse_shape(window, "--window"),
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

    try:
        sizes = tuple(float(part) for part in text.lower().split("x"))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or min(sizes) <= 0:
        raise UserInputError(
            f"--voxel-size must look like ZxYxX with positive sizes in um, got {text!r}"
        )
    return sizes  # type: ignore[return-value]
