"""The training recipe for small data: warm-up + cosine decay, early stopping that survives a
resume, foreground-aware training crops."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import SMALL_FIELD
from test_training_run import CrashAt, net_weights, tiny_config

from sparsessp_bmz.data.config import DataSettings, SimulationSettings
from sparsessp_bmz.data.dataset import SparsePatchDataset
from sparsessp_bmz.data.simulate.writer import simulate
from sparsessp_bmz.imageio import write_ome_tiff
from sparsessp_bmz.training.config import load_config
from sparsessp_bmz.training.module import warmup_cosine
from sparsessp_bmz.training.run import train

ROOT = Path(__file__).resolve().parents[1]


def test_warmup_rises_linearly_then_cosine_decays_to_zero() -> None:
    factors = [warmup_cosine(10, 110, step) for step in range(111)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == 1.0 and factors[60] == pytest.approx(0.5) and factors[110] == 0.0
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_the_paper_preset_keeps_the_papers_recipe_and_the_demo_gets_the_new_one() -> None:
    paper = load_config(ROOT / "training" / "paper.yaml").optim
    assert (paper.schedule, paper.early_stopping_patience, paper.min_foreground_fraction) == (
        "constant",
        None,
        0.0,
    )
    demo = load_config(ROOT / "training" / "demo.yaml").optim
    assert demo.early_stopping_patience is not None and demo.min_foreground_fraction > 0


def _one_blob_manifest(folder: Path) -> Path:
    """One field whose target is dark but for a bright box covering 11% of its area."""
    rng = np.random.default_rng(0)
    target = rng.normal(scale=0.01, size=(16, 96, 96)).astype(np.float32)
    target[4:12, 8:40, 8:40] += 5.0
    tl = rng.normal(size=target.shape).astype(np.float32)
    write_ome_tiff(folder / "tl.ome.tif", tl, (0.29, 0.29, 0.29))
    write_ome_tiff(folder / "dna.ome.tif", target, (0.29, 0.29, 0.29))
    (folder / "m.csv").write_text("path_signal,path_target,structure\ntl.ome.tif,dna.ome.tif,dna\n")
    return folder / "m.csv"


def test_training_crops_contain_foreground_when_asked(tmp_path: Path) -> None:
    settings = DataSettings(manifest=_one_blob_manifest(tmp_path), samples_per_epoch=40)
    rows = SparsePatchDataset.from_settings(settings, None, patch=(8, 32, 32), ratio=2).rows

    def share_with_blob(min_foreground: float) -> float:
        dataset = SparsePatchDataset(
            rows, settings, patch=(8, 32, 32), ratio=2, min_foreground=min_foreground
        )
        return float(np.mean([float(dataset[i]["target"].max()) > 2.0 for i in range(40)]))

    anywhere, foreground = share_with_blob(0.0), share_with_blob(0.001)
    assert anywhere < 0.6  # about 0.38 of random crops touch the box
    assert foreground >= 0.95


def test_early_stopping_and_the_lr_schedule_survive_a_resume(
    tmp_path: Path,
) -> None:
    settings = SimulationSettings(cells=4, structures=("dna",), seed=3, shape=SMALL_FIELD)
    manifest = simulate(settings, tmp_path / "data")
    overrides = (
        "optim.max_steps=60",
        "optim.val_every_n_epochs=1",
        "optim.early_stopping_patience=1",
        "optim.lr=0.05",  # far too high: validation MSE stops improving at once
        "optim.schedule=warmup_cosine",  # its state must resume too
    )
    straight = train(tiny_config(manifest, tmp_path / "straight", *overrides))
    assert straight.global_step < 60
    config = tiny_config(manifest, tmp_path / "crashed", *overrides)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, callbacks=[CrashAt(3)])
    resumed = train(config)
    assert resumed.global_step == straight.global_step
    expected, actual = net_weights(straight.last_checkpoint), net_weights(resumed.last_checkpoint)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert train(config).status == "already finished"
