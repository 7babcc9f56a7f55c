"""Training runs: checkpoints and metrics on disk, load_trained, resume equality, finish-once."""

from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import lightning as L
import pytest
import torch
from data_fixtures import SMALL_FIELD
from training_fixtures import tiny_raw

from sparsessp_bmz.data.config import SimulationSettings
from sparsessp_bmz.data.simulate.writer import simulate
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.checkpoint import load_trained
from sparsessp_bmz.training.config import TrainConfig, apply_overrides, config_from_mapping
from sparsessp_bmz.training.metrics_history import checkpoint_step, set_aside_history
from sparsessp_bmz.training.run import LAST, LOG_DIR, checkpoint_path, train


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small simulated fields (train 2, val 1, test 1) with DNA and mitochondria."""
    settings = SimulationSettings(
        cells=4, structures=("dna", "mitochondria"), seed=3, shape=SMALL_FIELD
    )
    return simulate(settings, tmp_path_factory.mktemp("simulated"))


def tiny_config(manifest: Path, run_dir: Path, *overrides: str) -> TrainConfig:
    """`tiny_raw` validated, with `key=value` overrides."""
    return config_from_mapping(apply_overrides(tiny_raw(manifest, run_dir), overrides), "test")


class CrashAt(L.Callback):
    """Stands in for kill -9: dies before the given step, after earlier checkpoints were written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def net_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_trained(checkpoint).net.state_dict()


def test_short_run_writes_best_and_last_checkpoints_and_metrics_csv(
    manifest: Path, tmp_path: Path
) -> None:
    result = train(tiny_config(manifest, tmp_path / "run"))
    assert result.status == "trained"
    assert result.best_checkpoint.is_file() and result.last_checkpoint.is_file()
    assert result.global_step == 3
    rows = list(csv.DictReader(result.metrics_csv.open()))
    assert any(row.get("val_mse") for row in rows)
    assert any(row.get("train_loss_epoch") for row in rows)
    assert math.isfinite(result.best_val_mse)


def test_load_trained_rebuilds_the_trained_network_with_its_facts(
    manifest: Path, tmp_path: Path
) -> None:
    config = tiny_config(manifest, tmp_path / "run")
    result = train(config)
    trained = load_trained(result.best_checkpoint)
    assert trained.spec == config.model
    assert not trained.net.training
    assert trained.structures == ("dna",)
    assert trained.manifest == manifest
    assert trained.voxel_size_um == (0.29, 0.29, 0.29)
    assert trained.facts.best_val_mse == pytest.approx(result.best_val_mse)
    assert trained.facts.global_step == 3
    assert trained.facts.run_dir == result.best_checkpoint.parent.parent
    saved_at = trained.facts.saved_at
    assert saved_at is not None
    assert abs(datetime.now(timezone.utc) - saved_at) < timedelta(minutes=10)
    raw = torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)
    for key, value in trained.net.state_dict().items():
        assert torch.equal(value, raw["state_dict"][f"net.{key}"])
    sparse = torch.randn(1, 1, *config.model.input_patch)
    assert trained.net(sparse).shape == (1, 1, *config.model.patch)


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(
    manifest: Path, tmp_path: Path
) -> None:
    steps = "optim.max_steps=6"
    straight = train(tiny_config(manifest, tmp_path / "straight", steps))
    config = tiny_config(manifest, tmp_path / "crashed", steps)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, callbacks=[CrashAt(3)])  # mid-epoch 1: last.ckpt is from step 2
    resumed = train(config)
    assert resumed.status == "resumed"
    assert resumed.global_step == straight.global_step == 6
    expected, actual = net_weights(straight.last_checkpoint), net_weights(resumed.last_checkpoint)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def _rows(metrics_csv: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(metrics_csv.open()))


def _logged_steps(metrics_csv: Path) -> list[int]:
    return [int(row["step"]) for row in _rows(metrics_csv) if row["train_loss_step"]]


def _killed_after_setting_aside(run_dir: Path) -> None:
    """What a resume killed before its logger started leaves: the side file, no metrics.csv."""
    last = checkpoint_path(run_dir, LAST)
    set_aside_history(run_dir / LOG_DIR, checkpoint_step(last))


@pytest.mark.parametrize(
    "interruptions",
    [(3,), (3, 5), (3, "kill")],
    ids=["crash", "crash-again-while-resuming", "resume-killed-after-setting-aside"],
)
def test_resumed_run_logs_the_rows_of_an_uninterrupted_run(
    manifest: Path, tmp_path: Path, interruptions: tuple[int | str, ...]
) -> None:
    overrides = ("optim.max_steps=6", "trainer.log_every_n_steps=1")
    straight = train(tiny_config(manifest, tmp_path / "straight", *overrides))
    config = tiny_config(manifest, tmp_path / "crashed", *overrides)
    for step in interruptions:  # the steps of an interrupted epoch were logged after its checkpoint
        if step == "kill":
            _killed_after_setting_aside(config.run_dir())
            continue
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(config, callbacks=[CrashAt(int(step))])
    resumed = train(config)
    assert _logged_steps(straight.metrics_csv) == list(range(6))
    assert _rows(resumed.metrics_csv) == _rows(straight.metrics_csv)  # values too: bit-identical


def test_a_larger_budget_keeps_the_final_validation_of_the_finished_run(
    manifest: Path, tmp_path: Path
) -> None:
    first = train(tiny_config(manifest, tmp_path / "run", "trainer.log_every_n_steps=1"))
    final = [row for row in _rows(first.metrics_csv) if row["step"] == "3" and row["val_mse"]]
    longer = train(
        tiny_config(manifest, tmp_path / "run", "trainer.log_every_n_steps=1", "optim.max_steps=4")
    )
    kept = [r["val_mse"] for r in _rows(longer.metrics_csv) if r["step"] == "3" and r["val_mse"]]
    assert kept == [final[0]["val_mse"]]
    assert _logged_steps(longer.metrics_csv) == [0, 1, 2, 3]


def test_rerunning_a_finished_run_is_a_no_op(manifest: Path, tmp_path: Path) -> None:
    config = tiny_config(manifest, tmp_path / "run")
    first = train(config)
    stamp = first.last_checkpoint.stat().st_mtime_ns
    again = train(config)
    assert again.status == "already finished"
    assert again.best_val_mse == first.best_val_mse
    assert first.last_checkpoint.stat().st_mtime_ns == stamp


def test_a_larger_step_budget_continues_the_finished_run(manifest: Path, tmp_path: Path) -> None:
    train(tiny_config(manifest, tmp_path / "run"))
    longer = train(tiny_config(manifest, tmp_path / "run", "optim.max_steps=4"))
    assert longer.status == "resumed" and longer.global_step == 4


def test_a_run_folder_of_another_config_is_refused(manifest: Path, tmp_path: Path) -> None:
    train(tiny_config(manifest, tmp_path / "run"))
    other = tiny_config(manifest, tmp_path / "run", "optim.lr=0.01")
    with pytest.raises(UserInputError, match="different training run"):
        train(other)


def test_spotlight_loss_trains(manifest: Path, tmp_path: Path) -> None:
    config = tiny_config(manifest, tmp_path / "run", "optim.loss=spotlight")
    result = train(config)
    assert math.isfinite(result.best_val_mse)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"not a checkpoint at all", "cannot be read"),
        ("foreign", "not written by `sparsessp-bmz train`"),
    ],
)
def test_load_trained_refuses_missing_corrupt_and_foreign_files(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "model.ckpt"
    if content == "foreign":
        torch.save({"state_dict": {}, "hyper_parameters": {"lr": 0.1}}, path)
    elif content is not None:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match=message):
        load_trained(path)


@pytest.mark.slow
def test_cli_run_killed_with_sigkill_resumes_to_the_uninterrupted_weights(
    manifest: Path, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess

    from matrix_fixtures import TRAIN, start_training, write_preset

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run([*TRAIN, str(write_preset(manifest, straight, 60))], check=True)
    preset = write_preset(manifest, killed, 60)
    process = start_training(preset, killed, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "done.json").exists(), "the run finished before it could be killed"
    subprocess.run([*TRAIN, str(preset)], check=True, capture_output=True)
    expected = net_weights(straight / "checkpoints" / "last.ckpt")
    actual = net_weights(killed / "checkpoints" / "last.ckpt")
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    metrics = Path("logs") / "metrics.csv"
    assert _logged_steps(killed / metrics) == _logged_steps(straight / metrics)


def test_a_second_process_is_refused_while_another_trains_the_run(
    manifest: Path, tmp_path: Path
) -> None:
    from matrix_fixtures import LockHolderProcess

    config = tiny_config(manifest, tmp_path / "run")
    holder = LockHolderProcess(config.run_dir())
    try:
        with pytest.raises(
            UserInputError, match=rf"in use \(being trained or evaluated\) by pid {holder.pid} on "
        ):
            train(config)
        assert not (config.run_dir() / "checkpoints").exists()
        assert not (config.run_dir() / "config.json").exists()
    finally:
        holder.stop()  # SIGKILL: the kernel releases the lock
    assert train(config).status == "trained"


def test_the_lock_names_its_slurm_job_and_is_free_once_its_holder_is_killed(
    tmp_path: Path,
) -> None:
    import os

    from matrix_fixtures import LockHolderProcess

    from sparsessp_bmz.training.run_lock import current_holder

    env = {**os.environ, "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "1"}
    holder = LockHolderProcess(tmp_path, env=env)
    seen = current_holder(tmp_path)
    assert seen is not None and seen.pid == holder.pid and seen.slurm_job_id == "4242_1"
    holder.stop()
    assert current_holder(tmp_path) is None


def test_a_lock_kept_by_orphans_of_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    from sparsessp_bmz.training.run_lock import current_holder, run_lock

    # the holder forks (as DataLoader workers are forked) and is killed; its child keeps the flock
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from sparsessp_bmz.training.run_lock import run_lock
        with run_lock(Path({str(tmp_path)!r})):
            child = os.fork()
            if child == 0:
                time.sleep(60)
                os._exit(0)
            print(child, flush=True)
            sys.stdin.readline()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    orphan = int(holder.stdout.readline())
    holder.kill()
    holder.wait()
    try:
        assert current_holder(tmp_path) is None  # its record names a dead process
        with run_lock(tmp_path) as me:
            assert current_holder(tmp_path) == me
    finally:
        os.kill(orphan, signal.SIGKILL)
