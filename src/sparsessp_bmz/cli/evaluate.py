"""`sparsessp-bmz evaluate`: the paper's metrics of one checkpoint on whole held-out volumes.

Beside the network, the mean predictor and a ridge regression on local TL features (fitted on the
training split) are scored on the same volumes, and one line says where the network does not beat
the ridge; metrics are also computed inside the target's foreground and, for blob-like structures,
on segmentations (object F1 and AP). `--report` adds an HTML page with pictures.

Plane models (one TL plane in, one fluorescence plane out; the ones QuPath runs) are also scored
with per-tile normalisation, as QuPath predicts them, beside the normal per-image normalisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Trained checkpoint (.ckpt).")],
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV of the data set.")],
    split: Annotated[str, typer.Option(help="Split to score: test, val or train.")] = "test",
    baseline: Annotated[
        Path | None,
        typer.Option(help="Results CSV of a baseline (summary.csv): adds Delta_Imp columns."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for per_image.csv and summary.csv (default: next to CKPT)."),
    ] = None,
    structure: Annotated[
        list[str] | None,
        typer.Option(help="Structure(s) to score (default: those the model was trained on)."),
    ] = None,
    overlap: Annotated[float, typer.Option(help="Sliding-window overlap per axis.")] = 0.5,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 4,
    device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")] = "cpu",
    per_tile: Annotated[
        bool | None,
        typer.Option(
            "--per-tile/--no-per-tile",
            help="Also score with each tile z-scored on its own, as QuPath runs a model "
            "(default: for plane models only).",
            show_default=False,
        ),
    ] = None,
    tile: Annotated[
        int,
        typer.Option(help="y/x tile in pixels for --per-tile (QuPath's default: 512)."),
    ] = 512,
    baselines: Annotated[
        bool,
        typer.Option(
            "--baselines/--no-baselines",
            help="Also fit and score the mean predictor and a ridge regression on TL features "
            "(training split) on the same volumes.",
        ),
    ] = True,
    report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Also write report.html with PNGs beside it in the output folder: per test "
            "volume TL | prediction | target | error views, intensity histograms, the tables.",
        ),
    ] = False,
) -> None:
    """Predict every volume of a split with the sliding window and score MSE, MAE, R², r,
    beside the mean predictor and a ridge regression on TL features, over the whole volume and the
    target's foreground, and (nuclei, nucleoli) object F1 / AP of Otsu segmentations; on
    simulated data also against the simulator's true objects (true_*), with the target's own
    segmentation against them as the ceiling (target_true_*).

    For plane models the table and CSVs also hold the metrics of predicting as QuPath does
    (per_tile_*: tiles of --tile pixels, each z-scored on its own) and their change from the
    normal ones (per_tile_diff_* = per tile - per image); the CSVs also separate the part due to
    the normalisation alone (tiled_*: the same tiles, volume z-scored; per_tile_norm_diff_* = per
    tile - tiled).
    """
    from rich.console import Console

    from sparsessp_bmz.data.check import require_usable
    from sparsessp_bmz.data.config import DataSettings
    from sparsessp_bmz.data.splits import rows_for
    from sparsessp_bmz.evaluation import (
        baseline_table,
        baseline_verdict,
        compare,
        evaluate_model,
        read_baseline,
        results_table,
        write_results,
    )
    from sparsessp_bmz.report import ReportFigures, write_report
    from sparsessp_bmz.training.checkpoint import load_trained

    trained = load_trained(checkpoint)
    reference = read_baseline(baseline) if baseline is not None else None
    # the run's own data settings (voxel grid, fallback voxel size, split protocol) on this
    # manifest
    wanted = tuple(structure) if structure else None
    if trained.data is not None:
        settings = trained.data_for(wanted).model_copy(update={"manifest": manifest.resolve()})
    else:
        settings = DataSettings(
            manifest=manifest.resolve(), voxel_size_um=trained.voxel_size_um, structures=wanted
        )
    if settings.structures is None:
        settings = settings.model_copy(update={"structures": trained.structures})
    # every row of the split (and the training rows the baselines are fitted on) opened before
    # any prediction: bad data fails in seconds
    rows = rows_for(settings, split, save=False)
    if baselines and split != "train":
        rows += rows_for(settings, "train", save=False)
    require_usable(rows, settings, "evaluation")
    out_dir = out if out is not None else checkpoint.parent / f"eval-{split}"
    figures = ReportFigures(out_dir, trained.spec.ratio) if report else None
    result = evaluate_model(
        trained,
        settings,
        split,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        progress=True,
        per_tile=per_tile,
        tile=tile,
        baselines=baselines,
        on_volume=figures,
    )
    if reference is not None:
        result = compare(result, reference)
    per_image, summary = write_results(result, out_dir)
    console = Console()
    console.print(results_table(result))
    verdict = baseline_verdict(result)
    if baselines:
        console.print(baseline_table(result))
        console.print(verdict)
    if figures is not None:
        title = f"{trained.spec.model_id} on the {split} split"
        console.print(f"wrote {write_report(result, figures, verdict, title)}")
    console.print(f"wrote {per_image} and {summary}")
