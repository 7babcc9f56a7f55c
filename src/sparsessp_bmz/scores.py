"""Held-out test scores of a checkpoint: evaluated once, stored in its run folder, read back.

A package states its model's test metrics (model card and RDF); the matrix summary and the demo
show them too. All of them read `RUN/eval-test/`, written by `scores_of`, so every checkpoint is
evaluated at most once. A stamp names the checkpoint (file, step, save time) the scores belong
to, so that scores of an earlier or a different checkpoint of the same run are never reused.

The scores include the baselines fitted on the run's training split (mean predictor, ridge on TL
features), the foreground and the object metrics (`metrics.HeldOutScores`). The stamp carries
`SCORES_VERSION`: scores stored by a version that did not compute all of these are evaluated
again rather than read with their new columns missing.
"""

from __future__ import annotations

import json
from pathlib import Path

from sparsessp_bmz.data.atomic import write_text
from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.metrics import ALL, HeldOutScores
from sparsessp_bmz.trained import TrainedModel

#: Folder of a run's evaluation on a split (`RUN/eval-test`).
EVAL_DIR = "eval-{split}"
STAMP_FILE = "evaluated.json"
TEST = "test"
#: Version of what a stored evaluation holds; 2 added baselines, foreground and object metrics,
#: 3 the object metrics against the simulator's true masks.
SCORES_VERSION = 3


def evaluation_dir(run_dir: Path, split: str = TEST) -> Path:
    """Where the run's evaluation of `split` lives."""
    return run_dir / EVAL_DIR.format(split=split)


def _stamp(trained: TrainedModel, settings: DataSettings, split: str) -> dict[str, object]:
    """What the stored scores are of: which checkpoint, on which data, split and structures."""
    facts = trained.facts
    return {
        "version": SCORES_VERSION,
        "checkpoint": facts.checkpoint.name if facts.checkpoint is not None else None,
        "global_step": facts.global_step,
        "saved_at": facts.saved_at.isoformat() if facts.saved_at is not None else None,
        "split": split,
        "data": settings.model_dump(mode="json", exclude={"cache_mb"}),
    }


def stored_scores(
    trained: TrainedModel, settings: DataSettings, split: str = TEST
) -> dict[str, HeldOutScores] | None:
    """The scores stored for exactly this checkpoint, data, split and `SCORES_VERSION`, or None."""
    from sparsessp_bmz.evaluation import SUMMARY_CSV, read_held_out

    run_dir = trained.facts.run_dir
    if run_dir is None:
        return None
    folder = evaluation_dir(run_dir, split)
    stamp, summary = folder / STAMP_FILE, folder / SUMMARY_CSV
    if not (stamp.is_file() and summary.is_file()):
        return None
    try:
        if json.loads(stamp.read_text(encoding="utf-8")) != _stamp(trained, settings, split):
            return None
    except json.JSONDecodeError:
        return None
    return {k: v for k, v in read_held_out(summary).items() if k != ALL}


def scores_of(
    trained: TrainedModel,
    split: str = TEST,
    *,
    settings: DataSettings | None = None,
    progress: bool = False,
) -> dict[str, HeldOutScores]:
    """Per-structure whole-volume scores of `trained` on `split`, computed once per checkpoint,
    with the foreground and object metrics and the baselines (`metrics.HeldOutScores`).

    `settings` are the data settings to score on (default: the run's own).
    Models that name no manifest (built in Python, not read from a checkpoint) keep the scores
    they carry (the paper's metrics only, when that is all they carry).
    """
    from sparsessp_bmz.evaluation import evaluate_model, write_results

    if trained.manifest is None or trained.facts.run_dir is None:
        return {
            k: v if isinstance(v, HeldOutScores) else HeldOutScores(**v.as_dict())
            for k, v in trained.test_metrics.items()
        }
    settings = settings or trained.data_for()
    stored = stored_scores(trained, settings, split)
    if stored is not None:
        return stored
    result = evaluate_model(trained, settings, split, progress=progress)
    folder = evaluation_dir(trained.facts.run_dir, split)
    (folder / STAMP_FILE).unlink(missing_ok=True)  # never an old stamp beside new scores
    write_results(result, folder)
    write_text(folder / STAMP_FILE, json.dumps(_stamp(trained, settings, split)) + "\n")
    return {structure: result.held_out(structure) for structure in result.structures()}
