"""Hostile-input catalogue, training side: `train`, `matrix`, `evaluate` and `check` meet bad
manifests, bad images, damaged run folders, tampered checkpoints and a full disk with one clear
line (or, for `check`, a table and exit code 1), and leave nothing created, changed or
half-written."""

from __future__ import annotations

import csv
import errno
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data_fixtures import SMALL_FIELD
from hostile_fixtures import assert_unchanged, run_cli, snapshot
from training_fixtures import tiny_raw

from sparsessp_bmz.data.config import DataSettings, SimulationSettings
from sparsessp_bmz.data.simulate.writer import simulate, write_ome_tiff
from sparsessp_bmz.data.splits import load_splits
from sparsessp_bmz.training.checkpoint import load_trained


def tiny_preset(manifest: Path, run_dir: Path, **model: object) -> dict:
    """Two steps per epoch on 8x32x32 patches of a very narrow 3to2d net (test_training_run)."""
    raw = tiny_raw(manifest, run_dir)
    raw["model"].update(model)
    raw["trainer"]["output_dir"] = str(run_dir.parent)
    return raw


def write_preset(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small simulated fields (train 2, val 1, test 1 per structure), splits written."""
    settings = SimulationSettings(
        cells=4, structures=("dna", "mitochondria"), seed=3, shape=SMALL_FIELD
    )
    manifest = simulate(settings, tmp_path_factory.mktemp("simulated"))
    load_splits(DataSettings(manifest=manifest))
    return manifest


@pytest.fixture(scope="module")
def trained_run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run on `dataset` (its folder)."""
    from sparsessp_bmz.training.config import config_from_mapping
    from sparsessp_bmz.training.run import train

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train(config_from_mapping(tiny_preset(dataset, run_dir), "test"))
    return run_dir


def split_file(manifest: Path, split: str) -> Path:
    """The image of the first DNA row of `split` in a copied data folder."""
    with manifest.with_name(f"{manifest.stem}.splits.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["split"] == split and row["structureProteinName"] == "dna":
                return manifest.parent / row["path_czi"]
    raise AssertionError(split)


@dataclass
class World:
    """One test's folders: a private copy of the data, a preset, an output folder."""

    tmp: Path
    shared_manifest: Path
    trained_run: Path
    data: Path = field(init=False)
    manifest: Path = field(init=False)
    runs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data = self.tmp / "data"
        shutil.copytree(self.shared_manifest.parent, self.data)
        self.manifest = self.data / self.shared_manifest.name
        self.runs = self.tmp / "runs"

    def preset(self, manifest: Path | None = None, **model: object) -> Path:
        raw = tiny_preset(manifest or self.manifest, self.runs / "run", **model)
        return write_preset(self.tmp / "train.yaml", raw)

    def matrix(self, organelles: str) -> Path:
        raw = tiny_preset(self.manifest, self.runs / "unused")
        del raw["trainer"]["run_dir"]
        write_preset(self.tmp / "base.yaml", raw)
        path = self.tmp / "matrix.yaml"
        path.write_text(
            f"base: base.yaml\norganelles: {organelles}\nratios: [2]\ntopologies: [3to2d]\n"
        )
        return path

    def copied_run(self) -> Path:
        """The trained run copied into `runs/run` (its config points at the shared data)."""
        shutil.copytree(self.trained_run, self.runs / "run")
        return self.runs / "run"

    def resume_preset(self, *extra: str) -> Path:
        """A preset of the copied run with a larger step budget, so `train` resumes it."""
        raw = tiny_preset(self.shared_manifest, self.runs / "run")
        raw["optim"]["max_steps"] = 4
        return write_preset(self.tmp / "resume.yaml", raw)

    def checkpoint(self, edit: Callable[[dict], None]) -> Path:
        """The trained best.ckpt with `edit` applied, saved beside the data."""
        raw = torch.load(self.trained_run / "checkpoints" / "best.ckpt", weights_only=True)
        edit(raw)
        path = self.tmp / "model.ckpt"
        torch.save(raw, path)
        return path


# ---- ways to spoil the data ------------------------------------------------------------------


def garbage_image(path: Path) -> None:
    """A 200-byte truncated TIFF in place of the image."""
    path.write_bytes(path.read_bytes()[:200])


def nan_image(path: Path) -> None:
    data = np.random.default_rng(0).random((3, *SMALL_FIELD)).astype(np.float32)
    data[1, 3, 4, 5] = np.nan
    data[0, 3, 4, 5] = np.nan
    path.unlink()
    write_ome_tiff(path, data, (0.29, 0.29, 0.29), ["tl", "dna", "mitochondria"])


def latin1_manifest(manifest: Path) -> None:
    text = manifest.read_text() + "images/caf\xe9.ome.tif,0,1,dna\n"  # as Excel saves it
    manifest.write_bytes(text.encode("latin-1"))


def channel_out_of_range(manifest: Path) -> None:
    """The first row's target channel set to 7 (of 3), in the manifest and its splits table."""
    for path in (manifest, manifest.with_name(f"{manifest.stem}.splits.csv")):
        head, first, *rest = path.read_text().splitlines()
        fields = first.split(",")
        fields[2] = "7"
        path.write_text("\n".join([head, ",".join(fields), *rest]) + "\n")


def plain_tiff_manifest(world: World) -> Path:
    """A pair-layout manifest of plain TIFFs that record no voxel size."""
    import tifffile

    folder = world.data / "plain"
    folder.mkdir()
    rows = []
    for index in range(4):
        for kind in ("tl", "dna"):
            data = np.random.default_rng(index).integers(0, 4000, SMALL_FIELD).astype(np.uint16)
            tifffile.imwrite(folder / f"{kind}{index}.tif", data, photometric="minisblack")
        rows.append(f"plain/tl{index}.tif,plain/dna{index}.tif,dna")
    manifest = world.data / "plain.csv"
    manifest.write_text("path_signal,path_target,structure\n" + "\n".join(rows) + "\n")
    return manifest


def edit_checkpoint(path: Path, edit: Callable[[dict], None]) -> None:
    raw = torch.load(path, weights_only=True)
    edit(raw)
    torch.save(raw, path)


def one_cell_manifest(world: World) -> Path:
    """A manifest of one cell: its split table (computed, not written) has no validation image."""
    head, first, *_ = world.manifest.read_text().splitlines()
    manifest = world.data / "one.csv"
    manifest.write_text(f"{head}\n{first}\n")
    return manifest


def damage(path: Path, how: str) -> None:
    """Spoil a checkpoint: cut it in half, overwrite it with random bytes, edit its stored
    config (another network width) or its facts (not numbers), or remove it (a kill between
    the two renames of a save)."""
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "random":
        path.write_bytes(np.random.default_rng(1).bytes(4096))
    elif how == "config-edited":
        edit_checkpoint(path, _set_width)
    elif how == "facts-not-numbers":
        edit_checkpoint(path, _facts_not_numbers)
    else:
        path.unlink()


# ---- the catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """Set up one hostile input; return the command line and the folders that must not change."""

    prepare: Callable[[World], tuple[list[object], list[Path]]]
    words: tuple[str, ...]
    code: int = 2


def _train(world: World, preset: Path) -> tuple[list[object], list[Path]]:
    return ["train", preset], [world.tmp]


def _check(world: World, *extra: object) -> tuple[list[object], list[Path]]:
    return ["check", world.manifest, *extra], [world.tmp]


def _evaluate(world: World, checkpoint: Path) -> tuple[list[object], list[Path]]:
    return ["evaluate", checkpoint, world.manifest], [world.tmp]


def _spoil(world: World, split: str, spoil: Callable[[Path], None]) -> World:
    spoil(split_file(world.manifest, split))
    return world


def _resume_with(world: World, setup: Callable[[Path], None]) -> tuple[list[object], list[Path]]:
    run = world.copied_run()
    setup(run)
    return ["train", world.resume_preset()], [world.tmp]


def _no_good_last(run: Path, how: str, previous: str = "") -> None:
    damage(run / "checkpoints" / "last.ckpt", how)
    if previous:
        damage(run / "checkpoints" / "last.previous.ckpt", previous)
    else:
        (run / "checkpoints" / "last.previous.ckpt").unlink(missing_ok=True)


def _splits_not_utf8(world: World) -> World:
    splits = world.manifest.with_name(f"{world.manifest.stem}.splits.csv")
    splits.write_bytes(splits.read_bytes().replace(b"dna,train", b"dn\xe4,train", 1))
    return world


def _set_units(raw: dict) -> None:
    raw["hyper_parameters"]["config"]["model"]["units"] = 32


def _set_width(raw: dict) -> None:
    raw["hyper_parameters"]["config"]["model"]["width"] = 0.25


def _facts_not_numbers(raw: dict) -> None:
    raw["sparsessp_bmz"]["global_step"] = "many"


def _facts_not_mapping(raw: dict) -> None:
    raw["sparsessp_bmz"] = "tampered"


def _config_not_mapping(raw: dict) -> None:
    raw["hyper_parameters"]["config"] = "tampered"


CASES: dict[str, Case] = {
    # train: the manifest and its rows are opened before a run folder exists
    "train-unknown-organelle": Case(
        lambda w: _train(w, w.preset(organelle="golgi")), ("golgi", "unknown structure")
    ),
    "train-manifest-not-utf8": Case(
        lambda w: (latin1_manifest(w.manifest), _train(w, w.preset()))[1], ("UTF-8", "save")
    ),
    "train-truncated-image": Case(
        lambda w: _train(_spoil(w, "train", garbage_image), w.preset()),
        ("line", "did not start", "sparsessp-bmz check"),
    ),
    "train-truncated-validation-image": Case(
        lambda w: _train(_spoil(w, "val", garbage_image), w.preset()),
        ("line", "did not start"),
    ),
    "train-nan-values": Case(
        lambda w: _train(_spoil(w, "train", nan_image), w.preset()), ("NaN", "clean the image")
    ),
    "train-volume-smaller-than-patch": Case(
        lambda w: _train(w, w.preset(patch=[8, 64, 64])), ("smaller than the patch", "model.patch")
    ),
    "train-channel-out-of-range": Case(
        lambda w: (channel_out_of_range(w.manifest), _train(w, w.preset()))[1],
        ("channel 7", "channel_target"),
    ),
    "train-no-voxel-size": Case(
        lambda w: _train(w, w.preset(plain_tiff_manifest(w))),
        ("voxel size", "fallback_voxel_size_um"),
    ),
    # train: the run folder's own state
    "train-corrupt-done-json": Case(
        lambda w: _resume_with(w, lambda run: (run / "done.json").write_text("{not json")),
        ("done.json", "damaged", "delete"),
    ),
    "train-done-json-not-numbers": Case(
        lambda w: _resume_with(
            w,
            lambda run: (run / "done.json").write_text(
                '{"budget": {"max_epochs": -1, "max_steps": 3}, "best_val_mse": "low", '
                '"global_step": "x", "epoch": 1}'
            ),
        ),
        ("done.json", "not numbers", "delete"),
    ),
    "train-corrupt-config-json": Case(
        lambda w: _resume_with(w, lambda run: (run / "config.json").write_bytes(b"\xff\xfe\x00")),
        ("config.json", "damaged", "trainer.run_dir"),
    ),
    "train-truncated-last-ckpt-no-fallback": Case(
        lambda w: _resume_with(w, lambda run: _no_good_last(run, "truncated")),
        ("last.ckpt", "damaged", "delete", "step 0"),
    ),
    "train-random-bytes-last-ckpt-no-fallback": Case(
        lambda w: _resume_with(w, lambda run: _no_good_last(run, "random")),
        ("last.ckpt", "damaged", "delete", "step 0"),
    ),
    "train-edited-last-ckpt-no-fallback": Case(
        lambda w: _resume_with(w, lambda run: _no_good_last(run, "config-edited")),
        ("last.ckpt", "not this run's", "delete", "step 0"),
    ),
    "train-last-ckpt-facts-not-numbers-no-fallback": Case(
        lambda w: _resume_with(w, lambda run: _no_good_last(run, "facts-not-numbers")),
        ("last.ckpt", "global_step", "delete", "step 0"),
    ),
    "train-last-and-previous-ckpt-damaged": Case(
        lambda w: _resume_with(w, lambda run: _no_good_last(run, "truncated", "random")),
        ("last.ckpt", "last.previous.ckpt", "delete", "step 0"),
    ),
    "train-no-validation-images": Case(
        lambda w: _train(w, w.preset(one_cell_manifest(w))), ("validation split", "more cells")
    ),
    "train-splits-table-not-utf8": Case(
        lambda w: _train(_splits_not_utf8(w), w.preset()), ("splits.csv", "UTF-8")
    ),
    # matrix: every entry's rows before any entry trains
    "matrix-unknown-organelle": Case(
        lambda w: (["matrix", w.matrix("[dna, golgi]")], [w.tmp]),
        ("matrix entry golgi", "unknown structure"),
    ),
    "matrix-truncated-image": Case(
        lambda w: (_spoil(w, "train", garbage_image), (["matrix", w.matrix("[dna]")], [w.tmp]))[1],
        ("matrix entry dna", "line", "did not start"),
    ),
    # evaluate: tampered checkpoints and bad rows, before any prediction or output
    "evaluate-config-edited-units": Case(
        lambda w: _evaluate(w, w.checkpoint(_set_units)), ("do not fit", "edited")
    ),
    "evaluate-config-edited-width": Case(
        lambda w: _evaluate(w, w.checkpoint(_set_width)), ("do not fit", "edited")
    ),
    "evaluate-config-not-a-mapping": Case(
        lambda w: _evaluate(w, w.checkpoint(_config_not_mapping)), ("config is invalid", "edited")
    ),
    "evaluate-facts-not-numbers": Case(
        lambda w: _evaluate(w, w.checkpoint(_facts_not_numbers)),
        ("global_step", "not a whole number", "train again"),
    ),
    "evaluate-facts-not-a-mapping": Case(
        lambda w: _evaluate(w, w.checkpoint(_facts_not_mapping)), ("not a mapping", "edited")
    ),
    "evaluate-truncated-test-image": Case(
        lambda w: _evaluate(_spoil(w, "test", garbage_image), w.checkpoint(lambda raw: None)),
        ("line", "evaluation did not start"),
    ),
    "evaluate-manifest-not-utf8": Case(
        lambda w: (latin1_manifest(w.manifest), _evaluate(w, w.checkpoint(lambda raw: None)))[1],
        ("UTF-8",),
    ),
    # check: a table and exit code 1 for bad rows, one error for a bad manifest
    "check-truncated-image": Case(
        lambda w: (_spoil(w, "train", garbage_image), _check(w))[1], ("cell_",), code=1
    ),
    "check-nan-values": Case(
        lambda w: (_spoil(w, "test", nan_image), _check(w))[1], ("NaN",), code=1
    ),
    "check-smaller-than-patch": Case(
        lambda w: _check(w, "--patch", "8x64x64"), ("smaller than the patch",), code=1
    ),
    "check-no-voxel-size": Case(
        lambda w: (["check", plain_tiff_manifest(w)], [w.tmp]), ("voxel size",), code=1
    ),
    "check-manifest-not-utf8": Case(
        lambda w: (latin1_manifest(w.manifest), _check(w))[1], ("UTF-8", "save")
    ),
    "check-unknown-structure": Case(
        lambda w: _check(w, "--structures", "dna,golgi"), ("golgi", "unknown structure")
    ),
    "check-bad-fallback-voxel-size": Case(
        lambda w: _check(w, "--fallback-voxel-size", "0,1,1"), ("--fallback-voxel-size",)
    ),
    "check-missing-manifest": Case(
        lambda w: (["check", w.tmp / "nowhere.csv"], [w.tmp]), ("does not exist",)
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(
    name: str,
    dataset: Path,
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = CASES[name]
    world = World(tmp_path, dataset, trained_run)
    args, folders = case.prepare(world)
    before = snapshot(*folders)
    outcome = run_cli(args, capsys, monkeypatch, cwd=tmp_path)
    if case.code == 2:
        outcome.assert_one_clear_error(*case.words)
    else:
        table = " ".join(outcome.stdout.split()).lower()
        assert outcome.code == case.code, (outcome.code, outcome.stdout, outcome.stderr)
        assert "Traceback" not in outcome.stdout + outcome.stderr
        assert "unusable" in table
        for word in case.words:
            assert word.lower() in table, (word, outcome.stdout)
    assert_unchanged(before, *folders)


def test_check_passes_a_good_manifest_and_changes_nothing(
    dataset: Path,
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World(tmp_path, dataset, trained_run)
    (world.manifest.with_name(f"{world.manifest.stem}.splits.csv")).unlink()
    before = snapshot(tmp_path)
    outcome = run_cli(["check", world.manifest, "--patch", "8x32x32"], capsys, monkeypatch)
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert "all 8 images are usable" in outcome.stdout
    assert_unchanged(before, tmp_path)  # no splits file either
    plain = plain_tiff_manifest(world)
    fallback = ["check", plain, "--fallback-voxel-size", "0.29,0.29,0.29"]
    outcome = run_cli(fallback, capsys, monkeypatch)
    assert outcome.code == 0 and "(fallback)" in outcome.stdout, outcome.stdout


def _no_partials(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if ".partial" in path.name]


def test_a_full_disk_while_saving_a_checkpoint_is_one_error_and_no_truncated_file(
    dataset: Path,
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sparsessp_bmz.training import checkpoint_io

    world = World(tmp_path, dataset, trained_run)
    run = world.copied_run()
    checkpoints = run / "checkpoints"
    before = snapshot(checkpoints)

    real_fsync = os.fsync

    def disk_full(fd: int) -> None:  # the partial file holds bytes when the disk fills up
        # only checkpoint files: the run lock's record is synced too, before training starts
        if ".ckpt" not in os.readlink(f"/proc/self/fd/{fd}"):
            return real_fsync(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_io.os, "fsync", disk_full)
    outcome = run_cli(["train", world.resume_preset()], capsys, monkeypatch, cwd=tmp_path)
    outcome.assert_one_clear_error("no space left", "cannot write", "run the same command again")
    assert_unchanged(before, checkpoints)  # last/best/previous as they were, no partial file
    assert not _no_partials(run)
    assert not (run / "done.json").exists()

    fresh = world.preset()  # a new run: nothing under a final checkpoint name at all
    shutil.rmtree(world.runs)
    outcome = run_cli(["train", fresh], capsys, monkeypatch, cwd=tmp_path)
    outcome.assert_one_clear_error("no space left")
    assert not list((world.runs / "run").rglob("*.ckpt")) and not _no_partials(world.runs)


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_trained(checkpoint).net.state_dict()


def _metrics(run: Path) -> list[dict[str, str]]:
    with (run / "logs" / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def logged_config(manifest: Path, run_dir: Path, steps: int):  # type: ignore[no-untyped-def]
    """The tiny preset with a step budget, logging every step."""
    from sparsessp_bmz.training.config import config_from_mapping

    raw = tiny_preset(manifest, run_dir)
    raw["optim"]["max_steps"] = steps
    raw["trainer"]["log_every_n_steps"] = 1
    return config_from_mapping(raw, "test")


@pytest.fixture(scope="module")
def straight_run(dataset: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Six uninterrupted steps (three epochs), logging every step."""
    from sparsessp_bmz.training.run import train

    return train(logged_config(dataset, tmp_path_factory.mktemp("straight") / "run", 6))


@pytest.mark.parametrize("how", ["truncated", "random", "config-edited", "missing"])
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one_bit_identically(
    dataset: Path,
    straight_run,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    how: str,
) -> None:
    """last.ckpt damaged after epoch 2 of 3: the run resumes from last.previous.ckpt (epoch 1)
    and ends with the weights and the metrics history of an uninterrupted run."""
    from sparsessp_bmz.training.run import train

    def config(name: str, steps: int):  # type: ignore[no-untyped-def]
        return logged_config(dataset, tmp_path / name, steps)

    straight = straight_run
    first = train(config("damaged", 4))  # epochs end at steps 2 and 4
    checkpoints = first.run_dir / "checkpoints"
    assert torch.load(checkpoints / "last.previous.ckpt", weights_only=True)["global_step"] == 2
    damage(checkpoints / "last.ckpt", how)
    capsys.readouterr()
    resumed = train(config("damaged", 6))
    warning = " ".join(capsys.readouterr().err.split())
    if how == "missing":  # killed between the renames: nothing is damaged, nothing to say
        assert not warning and not (checkpoints / "last.ckpt.damaged").exists()
    else:
        assert "last.ckpt is damaged" in warning and "last.previous.ckpt (step 2)" in warning
        assert (checkpoints / "last.ckpt.damaged").is_file()
    assert resumed.status == "resumed" and resumed.global_step == 6
    expected, actual = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert _metrics(resumed.run_dir) == _metrics(straight.run_dir)


def test_every_checkpoint_goes_through_the_atomic_writer(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning's saves and run.py's own `trainer.save_checkpoint(best)` alike."""
    from sparsessp_bmz.training import checkpoint_io
    from sparsessp_bmz.training.config import config_from_mapping
    from sparsessp_bmz.training.run import train

    saved: list[str] = []
    real = checkpoint_io.AtomicCheckpointIO.save_checkpoint

    def recording(self, checkpoint, path, storage_options=None):  # type: ignore[no-untyped-def]
        saved.append(Path(path).name)
        return real(self, checkpoint, path, storage_options)

    monkeypatch.setattr(checkpoint_io.AtomicCheckpointIO, "save_checkpoint", recording)
    result = train(config_from_mapping(tiny_preset(dataset, tmp_path / "run"), "test"))
    assert set(saved) == {"best.ckpt", "last.ckpt"}
    written = {path.name for path in (result.run_dir / "checkpoints").iterdir()}
    assert written == {"best.ckpt", "last.ckpt", "last.previous.ckpt"}


def test_volumes_above_the_limit_are_checked_from_their_header_only(dataset: Path) -> None:
    from sparsessp_bmz.data.check import check_rows
    from sparsessp_bmz.data.manifest import read_manifest

    settings = DataSettings(manifest=dataset)
    rows = read_manifest(dataset)[:2]
    reports = check_rows(rows, settings, patch=(8, 32, 32), limit_bytes=1)
    assert all(report.ok and not report.values_read for report in reports)
    assert reports[0].status.startswith("ok (header only")
    assert reports[0].shape == reports[0].resampled_shape == SMALL_FIELD
    wrong = [replace(rows[0], target_channel=5)]
    (report,) = check_rows(wrong, settings, limit_bytes=1)
    assert "channel 5 is out of range" in report.problem
    (small,) = check_rows(rows[:1], settings, patch=(8, 64, 64), limit_bytes=1)
    assert "smaller than the patch" in small.problem


def test_deleting_the_damaged_checkpoint_as_told_trains_the_run_afresh(
    dataset: Path,
    straight_run,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """The error's advice works: the run then ends as an uninterrupted one, and the metrics
    history holds no row of the abandoned attempt."""
    from sparsessp_bmz.errors import UserInputError
    from sparsessp_bmz.training.run import train

    first = train(logged_config(dataset, tmp_path / "run", 4))
    _no_good_last(first.run_dir, "truncated")
    with pytest.raises(UserInputError, match="delete") as refused:
        train(logged_config(dataset, tmp_path / "run", 6))
    told = first.last_checkpoint
    assert f"delete {told} to train" in str(refused.value)
    told.unlink()
    again = train(logged_config(dataset, tmp_path / "run", 6))
    assert again.status == "trained" and again.global_step == 6
    expected, actual = _weights(straight_run.last_checkpoint), _weights(again.last_checkpoint)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert _metrics(again.run_dir) == _metrics(straight_run.run_dir)
