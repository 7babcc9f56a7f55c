"""Does training learn? The demo preset on simulated cells against two baselines, on held-out cells.

Trains (CPU, one run at a time) a model per setting with `training/demo.yaml` and scores its best
checkpoint on the whole test volumes (Gaussian sliding window), next to
  * the mean predictor: every voxel = the mean training target (z-scored, so about 0), and
  * a voxel-wise linear fit a * TL + b on the nearest-upsampled sparse TL, fitted on the training
    volumes by least squares.
Settings: 3to2d at r = 2, 4, 8 and 3d at r = 4, all with the same step budget.

    .venv/bin/python benchmarks/learning_evidence.py                 # all settings
    .venv/bin/python benchmarks/learning_evidence.py --only 3to2d-r4 --steps 150

Prints a markdown table and writes it (and a CSV) to OUT/learning_evidence.{md,csv}. Runs are
resumable: a finished setting is not retrained.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from sparsessp_bmz.data.config import SimulationSettings
from sparsessp_bmz.data.simulate.writer import MANIFEST_NAME, simulate
from sparsessp_bmz.data.sparse import subsample
from sparsessp_bmz.data.splits import rows_for
from sparsessp_bmz.data.volumes import load_pair
from sparsessp_bmz.evaluation import evaluate_model, evaluate_predictor
from sparsessp_bmz.training.checkpoint import load_trained
from sparsessp_bmz.training.config import load_config
from sparsessp_bmz.training.run import train

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "3to2d-r2": ("3to2d", 2),
    "3to2d-r4": ("3to2d", 4),
    "3to2d-r8": ("3to2d", 8),
    "3d-r4": ("3d", 4),
}


def upsample(sparse: np.ndarray, ratio: int) -> np.ndarray:
    """Nearest z upsampling of a sparse stack: what the prefix networks see."""
    return np.repeat(sparse, ratio, axis=0)


def fit_baselines(config, ratio: int):  # type: ignore[no-untyped-def]
    """The mean and the least-squares line a * TL + b over every training voxel."""
    settings = config.data_settings
    n = sx = sy = sxx = sxy = 0.0
    for row in rows_for(settings, "train"):
        pair = load_pair(row, settings)
        tl = upsample(subsample(pair.signal, ratio, 0), ratio)[: pair.target.shape[0]]
        y = pair.target[: tl.shape[0]].astype(np.float64)
        x = tl.astype(np.float64)
        n += x.size
        sx, sy = sx + x.sum(), sy + y.sum()
        sxx, sxy = sxx + (x * x).sum(), sxy + (x * y).sum()
    slope = (sxy - sx * sy / n) / (sxx - sx * sx / n)
    intercept = (sy - slope * sx) / n
    mean = sy / n

    def mean_predictor(sparse: np.ndarray) -> np.ndarray:
        return np.full((sparse.shape[0] * ratio, *sparse.shape[1:]), mean, dtype=np.float32)

    def linear_predictor(sparse: np.ndarray) -> np.ndarray:
        return (slope * upsample(sparse, ratio) + intercept).astype(np.float32)

    return mean_predictor, linear_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "training" / "runs" / "evidence")
    parser.add_argument("--cells", type=int, default=24)
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--only", nargs="*", choices=sorted(SETTINGS), default=None)
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides of demo.yaml")
    args = parser.parse_args()

    data = args.out / "data"
    if not (data / MANIFEST_NAME).is_file():
        simulate(SimulationSettings(cells=args.cells, structures=("dna",), seed=0), data)
    records = []
    for name in args.only or list(SETTINGS):
        topology, ratio = SETTINGS[name]
        overrides = [
            f"data.manifest={data / MANIFEST_NAME}",
            f"model.topology={topology}",
            f"model.ratio={ratio}",
            f"trainer.output_dir={args.out / 'runs'}",
            "trainer.progress_bar=false",
            *([f"optim.max_steps={args.steps}"] if args.steps else []),
            *args.overrides,
        ]
        config = load_config(ROOT / "training" / "demo.yaml", overrides)
        start = time.perf_counter()
        result = train(config)
        seconds = time.perf_counter() - start
        trained = load_trained(result.best_checkpoint)
        scores = evaluate_model(trained, config.data_settings, "test").overall()
        mean_fn, linear_fn = fit_baselines(config, ratio)
        rows = rows_for(config.data_settings, "test")
        baseline = {
            label: evaluate_predictor(
                fn, rows, config.data_settings, ratio, model_id=label, split="test"
            ).overall()
            for label, fn in (("mean", mean_fn), ("linear", linear_fn))
        }
        records.append(
            {
                "setting": name,
                "steps": result.global_step,
                "train_s": "resumed/cached"
                if result.status == "already finished"
                else f"{seconds:.0f}",
                "best_step_val_mse": f"{result.best_val_mse:.3f}",
                "test_mse": f"{scores.mse:.3f}",
                "test_r2": f"{scores.r2:.3f}",
                "test_pearson": f"{scores.pearson:.3f}",
                "mean_r2": f"{baseline['mean'].r2:.3f}",
                "linear_r2": f"{baseline['linear'].r2:.3f}",
                "linear_mse": f"{baseline['linear'].mse:.3f}",
            }
        )
        print(records[-1], flush=True)
    columns = list(records[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in records]
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learning_evidence.md").write_text(table + "\n")
    with (args.out / "learning_evidence.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)


if __name__ == "__main__":
    main()
