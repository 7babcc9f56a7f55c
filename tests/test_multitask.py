"""Multi-task SparseSSP end to end: balanced sampling, training with task ids, per-structure
evaluation with each structure's task, and one baked package per structure."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from data_fixtures import small_simulation  # noqa: F401

from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.dataset import SparsePatchDataset
from sparsessp_bmz.data.splits import rows_for
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.evaluation import evaluate_model
from sparsessp_bmz.training.checkpoint import load_trained
from sparsessp_bmz.training.config import load_config
from sparsessp_bmz.training.run import train

REPO = Path(__file__).resolve().parents[1]
TASKS = ("dna", "mitochondria")


def test_batches_mix_structures_equally_whatever_their_image_counts(
    small_simulation: Path,  # noqa: F811
):
    settings = DataSettings(manifest=small_simulation, samples_per_epoch=16, patches_per_volume=4)
    rows = rows_for(settings, "train")
    unequal = [row for row in rows if row.structure == "dna"] + [
        next(row for row in rows if row.structure == "mitochondria")
    ]
    dataset = SparsePatchDataset(unequal, settings, patch=(8, 32, 32), ratio=2)
    structures = [dataset[i]["structure"] for i in range(len(dataset))]
    assert Counter(structures) == {"dna": 8, "mitochondria": 8}
    assert structures[:2] == ["dna", "mitochondria"]  # a batch of two already mixes them


def test_multitask_model_trains_evaluates_per_task_and_exports_baked_packages(
    small_simulation: Path,  # noqa: F811
    tmp_path: Path,
):
    config = load_config(
        REPO / "training" / "demo.yaml",
        [
            f"data.manifest={small_simulation}",
            f"trainer.output_dir={tmp_path / 'runs'}",
            "model.organelle=dna",
            f"model.tasks=[{','.join(TASKS)}]",
            "model.embedding=repmode",
            "model.ratio=2",
            "model.patch=[8,32,32]",
            "model.width=0.125",
            "model.units=16",
            "optim.max_steps=3",
            "optim.batch_size=2",
            "optim.val_samples=2",
            "data.samples_per_epoch=4",
            "trainer.progress_bar=false",
        ],
    )
    result = train(config)
    trained = load_trained(result.best_checkpoint)
    assert trained.spec.tasks == TASKS and trained.net.conditioned

    evaluation = evaluate_model(trained, config.data_settings, "test")
    assert {image.structure for image in evaluation.images} == set(TASKS)

    from sparsessp_bmz.bmz.export import export, load_package
    from sparsessp_bmz.bmz.package import export_trained

    packages = tmp_path / "packages"
    with pytest.raises(UserInputError, match="multi-task network"):
        export_trained(trained, packages)  # unbaked: refused before any work
    assert not packages.exists() or not list(packages.iterdir())
    x = torch.randn(1, 1, *trained.spec.input_patch)
    for task_index, task in enumerate(TASKS):
        baked = trained.for_task(task)
        assert baked.spec.model_id == f"sparsessp-{task}-r2-3to2d-repmode"
        with torch.no_grad():
            expected = trained.net(x, torch.tensor([task_index]))
            torch.testing.assert_close(baked.net(x), expected, rtol=1e-5, atol=1e-5)
    outcome = export(trained, packages)  # bakes one package per structure itself
    assert outcome.passed
    assert [p.facts.package_id for p in outcome.packages] == [
        f"sparsessp-{task}-r2-3to2d-repmode" for task in TASKS
    ]
    scores = {row.structure: row.metrics for row in evaluation.summary}
    for task_index, exported in enumerate(outcome.packages):
        # held-out test scores of each structure in its card
        assert exported.facts.test_metrics == scores[exported.facts.spec.organelle]
        # and the way back: the baked network, as the multi-task one predicts its structure
        loaded = load_package(exported.archive)
        with torch.no_grad():
            expected = trained.net(x, torch.tensor([task_index]))
            torch.testing.assert_close(loaded.net(x), expected, rtol=1e-5, atol=1e-5)
    archive = packages / "sparsessp-mitochondria-r2-3to2d-repmode.zip"
    bioimageio = Path(sys.executable).with_name("bioimageio")
    run = subprocess.run([bioimageio, "test", archive], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
