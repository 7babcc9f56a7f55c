"""Multi-task vs per-structure SparseSSP on simulated cells (issue 6, item 5).

Per-structure 3to2d models (embedding none) get STEPS optimiser steps each; every multi-task 3to2d
model (dodnet, repmode, tsns) learns all structures at once for STEPS x (number of structures)
steps, so both sides spend the same total number of steps. All use training/demo.yaml at r = 4
and are scored on whole held-out volumes, each structure with its own (baked) task.

    .venv/bin/python benchmarks/multitask_evidence.py [--steps 100] [--out training/runs/mt]

Prints and writes a markdown table of test R^2 per structure. Finished runs are not retrained.
The last rows are the baselines on the same test volumes (`evaluate_model` fits them on each
structure's training split at the same r): the mean predictor and the ridge on TL features; they
do not depend on the network, so they are taken from the first evaluation.
Batches mix structures: with batches drawn from one volume (one structure) each, the multi-task
networks' batch-norm statistics swing from structure to structure and they do not learn.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from sparsessp_bmz.data.config import SimulationSettings
from sparsessp_bmz.data.simulate.writer import MANIFEST_NAME, simulate
from sparsessp_bmz.evaluation import evaluate_model
from sparsessp_bmz.training.checkpoint import load_trained
from sparsessp_bmz.training.config import load_config
from sparsessp_bmz.training.run import train

ROOT = Path(__file__).resolve().parents[1]
STRUCTURES = ("dna", "nucleolus", "mitochondria")
EMBEDDINGS = ("dodnet", "repmode", "tsns")


def _run(
    out: Path, manifest: Path, overrides: list[str]
) -> tuple[dict[str, float], float, dict[str, dict[str, float]]]:
    """Train (or reuse) one model; R^2 per structure on the test split, training seconds (NaN
    for a reused run) and the baselines' R^2 per structure (by baseline)."""
    config = load_config(
        ROOT / "training" / "demo.yaml",
        [
            f"data.manifest={manifest}",
            f"trainer.output_dir={out}",
            "model.ratio=4",
            *overrides,
        ],
    )
    start = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - start if result.status != "already finished" else math.nan
    trained = load_trained(result.best_checkpoint)
    evaluation = evaluate_model(trained, config.data_settings, "test")
    baselines = {
        key: {row.structure: row.metrics.r2 for row in result.summary}
        for key, result in evaluation.baselines.items()
    }
    return {row.structure: row.metrics.r2 for row in evaluation.summary}, seconds, baselines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100, help="Steps per structure.")
    parser.add_argument("--cells", type=int, default=24)
    parser.add_argument("--out", type=Path, default=ROOT / "training" / "runs" / "multitask")
    args = parser.parse_args()

    data = args.out / "data"
    manifest = data / MANIFEST_NAME
    if not manifest.is_file():
        simulate(
            SimulationSettings(cells=args.cells, structures=STRUCTURES, shape=(48, 128, 128)), data
        )
    rows: list[tuple[str, dict[str, float], float, int]] = []
    single: dict[str, float] = {}
    baselines: dict[str, dict[str, float]] = {}
    seconds = 0.0
    for structure in STRUCTURES:
        scores, took, found = _run(
            args.out, manifest, [f"model.organelle={structure}", f"optim.max_steps={args.steps}"]
        )
        single[structure] = scores[structure]
        seconds += took
        for key, values in found.items():
            baselines.setdefault(key, {})[structure] = values[structure]
    rows.append(("none (one net per structure)", single, seconds, args.steps * len(STRUCTURES)))
    for embedding in EMBEDDINGS:
        total = args.steps * len(STRUCTURES)
        scores, took, _ = _run(
            args.out,
            manifest,
            [
                f"model.organelle={STRUCTURES[0]}",
                f"model.tasks=[{','.join(STRUCTURES)}]",
                f"model.embedding={embedding}",
                f"optim.max_steps={total}",
            ],
        )
        rows.append((embedding, scores, took, total))
    rows += [(f"{key} baseline", values, math.nan, 0) for key, values in baselines.items()]

    header = ["embedding", *STRUCTURES, "mean R²", "steps", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, scores, took, steps in rows:
        values = [scores[s] for s in STRUCTURES]
        cells = [f"{v:.3f}" for v in values]
        mean = sum(values) / len(values)
        seconds = f"{took:.0f}" if math.isfinite(took) else ("—" if not steps else "reused")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} | {steps} | {seconds} |")
    table = "\n".join(lines)
    print(table)
    (args.out / "multitask_evidence.md").write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
