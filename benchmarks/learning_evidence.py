"""Does training learn more than a trivial method would? Networks beside the baselines.

Two tables, both scored on whole held-out volumes by `evaluate_model`, which also fits and scores
the baselines on the same volumes (the mean predictor; a ridge regression on local TL features
fitted on the training split, see `sparsessp_bmz.baselines`):

* `recipes` (default): the old training recipe (constant lr, no early stopping, any crop) against
  the new one (the defaults of `training/demo.yaml`: early stopping, foreground-aware crops) and
  the new one with the optional warm-up + cosine schedule, on a *harder* simulated data set than
  the demo's: fewer fields
  (--cells), TL contrast scaled down (--contrast) and extra camera noise (--noise, in units of
  the TL's own standard deviation) added to every TL stack after simulation. All recipes get
  the same step budget, and the runs are interleaved (old, new, new+cosine, old, ...) over
  seeds, so the CPU load other jobs put on the machine falls on all alike; train seconds and the
  1-minute load average at the start of each run are printed.
* `settings`: the demo preset at r = 2, 4, 8 (3to2d) and 3d at r = 4 on the demo-like data set.

    .venv/bin/python benchmarks/learning_evidence.py                     # recipes
    .venv/bin/python benchmarks/learning_evidence.py settings --steps 200

Prints markdown tables and writes them (and CSVs) to OUT/learning_evidence_<mode>.{md,csv}. Runs
are resumable: a finished run is not retrained (its train seconds then read "reused").
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import time
from pathlib import Path

import numpy as np

from sparsessp_bmz.data.config import DEFAULT_VOXEL_SIZE_UM, SimulationSettings
from sparsessp_bmz.data.simulate.writer import (
    IMAGE_FOLDER,
    MANIFEST_NAME,
    TL_CHANNEL,
    simulate,
    write_ome_tiff,
)
from sparsessp_bmz.evaluation import evaluate_model
from sparsessp_bmz.training.checkpoint import load_trained
from sparsessp_bmz.training.config import load_config
from sparsessp_bmz.training.run import train

ROOT = Path(__file__).resolve().parents[1]
STRUCTURES = ("dna",)
SETTINGS = {
    "3to2d-r2": ("3to2d", 2),
    "3to2d-r4": ("3to2d", 4),
    "3to2d-r8": ("3to2d", 8),
    "3d-r4": ("3d", 4),
}
#: The recipe before this benchmark's issue, as overrides of the current demo preset.
OLD_RECIPE = [
    "optim.schedule=constant",
    "optim.early_stopping_patience=null",
    "optim.min_foreground_fraction=0",
]
#: "new" is the current default; "new+cosine" adds the optional warm-up + cosine schedule.
RECIPES = {"old": OLD_RECIPE, "new": [], "new+cosine": ["optim.schedule=warmup_cosine"]}
#: A degraded data set is marked so that it is degraded once only.
DEGRADED_MARK = "degraded.txt"


def degrade_tl(data: Path, contrast: float, noise: float, seed: int = 0) -> None:
    """Scale each field's TL contrast about its mean by `contrast` and add Gaussian noise of
    `noise` times its standard deviation (the harder setting), rewriting the files once."""
    import tifffile

    mark = data / DEGRADED_MARK
    wanted = f"contrast {contrast} noise {noise} seed {seed}\n"
    if mark.is_file():
        if mark.read_text() != wanted:
            raise SystemExit(f"{data} was degraded differently ({mark.read_text().strip()})")
        return
    rng = np.random.default_rng(seed)
    for path in sorted((data / IMAGE_FOLDER).glob("*.ome.tif")):
        stack = tifffile.imread(path)
        tl = stack[0].astype(np.float64)
        mean, std = tl.mean(), tl.std()
        tl = mean + contrast * (tl - mean) + rng.normal(scale=noise * std, size=tl.shape)
        stack[0] = np.clip(np.rint(tl), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        write_ome_tiff(path, stack, DEFAULT_VOXEL_SIZE_UM, [TL_CHANNEL, *STRUCTURES])
    mark.write_text(wanted)


def _load() -> float:
    return os.getloadavg()[0]


def run_one(name: str, overrides: list[str]) -> dict[str, str]:
    """Train (or reuse) one model and score it with the baselines; one table row."""
    config = load_config(ROOT / "training" / "demo.yaml", overrides)
    load = _load()
    start = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - start
    fresh = result.status != "already finished"
    trained = load_trained(result.best_checkpoint)
    evaluation = evaluate_model(trained, config.data_settings, "test")
    scores = evaluation.held_out(evaluation.structures()[0])
    ridge, mean = scores.baselines["ridge"], scores.baselines["mean"]
    objects = scores.objects
    return {
        "run": name,
        "steps": str(result.global_step),
        "train_s": f"{seconds:.0f}" if fresh else "reused",
        "load": f"{load:.1f}" if fresh else "",
        "test_r2": f"{scores.r2:.3f}",
        "test_r2_fg": f"{scores.foreground.r2:.3f}" if scores.foreground else "",
        "f1_50": f"{objects.f1_50:.3f}" if objects else "",
        "pearson": f"{scores.pearson:.3f}",
        "ridge_r2": f"{ridge.whole.r2:.3f}",
        "ridge_f1_50": f"{ridge.objects.f1_50:.3f}" if ridge.objects else "",
        "mean_r2": f"{mean.whole.r2:.3f}",
    }


def _mean_rows(records: list[dict[str, str]], key: str) -> list[dict[str, str]]:
    """Mean over seeds per recipe (numeric columns)."""
    rows = []
    for recipe in dict.fromkeys(r[key] for r in records):
        mine = [r for r in records if r[key] == recipe]
        row = {"run": f"{recipe} (mean of {len(mine)})"}
        for column in records[0]:
            if column in ("run", "seed", key):
                continue
            values = [float(r[column]) for r in mine if r[column] not in ("", "reused")]
            row[column] = f"{np.mean(values):.3f}" if values else ""
        row[key], row["seed"] = recipe, ""
        rows.append(row)
    return rows


def _write(records: list[dict[str, str]], out: Path, mode: str, note: str) -> None:
    columns = list(records[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r.get(c, "") for c in columns) + " |" for r in records]
    table = "\n".join(lines) + ("\n\n" + note if note else "")
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"learning_evidence_{mode}.md").write_text(table + "\n")
    with (out / f"learning_evidence_{mode}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)


def recipes(args: argparse.Namespace) -> None:
    data = args.out / "hard-data"
    if not (data / MANIFEST_NAME).is_file():
        simulate(SimulationSettings(cells=args.cells, structures=STRUCTURES, seed=0), data)
    degrade_tl(data, args.contrast, args.noise)
    records = []
    for seed in range(args.seeds):
        for recipe, extra in RECIPES.items():  # interleaved: old, new, old, new, ...
            overrides = [
                f"data.manifest={data / MANIFEST_NAME}",
                f"model.ratio={args.ratio}",
                f"trainer.output_dir={args.out / 'runs'}",
                "trainer.progress_bar=false",
                f"trainer.seed={seed}",
                f"data.seed={seed}",
                f"optim.max_steps={args.steps}",
                *extra,
                *args.overrides,
            ]
            row = {"recipe": recipe, "seed": str(seed)} | run_one(f"{recipe} s{seed}", overrides)
            records.append(row)
            print(row, flush=True)
    note = (
        f"3to2d, r = {args.ratio}, {args.steps}-step budget, {args.cells} simulated fields (DNA), "
        f"TL contrast x{args.contrast}, added noise {args.noise} TL std; load = 1-minute load "
        f"average at the start of the run ({os.cpu_count()} cores)."
    )
    _write([*records, *_mean_rows(records, "recipe")], args.out, "recipes", note)


def settings(args: argparse.Namespace) -> None:
    data = args.out / "data"
    if not (data / MANIFEST_NAME).is_file():
        simulate(SimulationSettings(cells=args.cells, structures=STRUCTURES, seed=0), data)
    records = []
    for name in args.only or list(SETTINGS):
        topology, ratio = SETTINGS[name]
        overrides = [
            f"data.manifest={data / MANIFEST_NAME}",
            f"model.topology={topology}",
            f"model.ratio={ratio}",
            f"trainer.output_dir={args.out / 'runs'}",
            "trainer.progress_bar=false",
            f"optim.max_steps={args.steps}",
            *args.overrides,
        ]
        records.append(run_one(name, overrides))
        print(records[-1], flush=True)
    _write(records, args.out, "settings", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("recipes", "settings"), default="recipes")
    parser.add_argument("--out", type=Path, default=ROOT / "training" / "runs" / "evidence")
    parser.add_argument("--cells", type=int, default=None, help="recipes: 12; settings: 24")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--ratio", type=int, default=4, help="recipes: the sparsity ratio")
    parser.add_argument("--seeds", type=int, default=2, help="recipes: seeds per recipe")
    parser.add_argument("--contrast", type=float, default=0.5, help="recipes: TL contrast factor")
    parser.add_argument("--noise", type=float, default=1.0, help="recipes: added noise / TL std")
    parser.add_argument("--only", nargs="*", choices=sorted(SETTINGS), default=None)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="key=value for demo.yaml"
    )
    args = parser.parse_args()
    if args.cells is None:
        args.cells = 12 if args.mode == "recipes" else 24
    if not math.isfinite(args.contrast) or args.contrast <= 0:
        parser.error("--contrast must be positive")
    (recipes if args.mode == "recipes" else settings)(args)


if __name__ == "__main__":
    main()
