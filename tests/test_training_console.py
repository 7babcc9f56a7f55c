"""What a training prints: one progress bar, no Lightning chatter; `--verbose` shows Lightning's."""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import pytest
import torch
from data_fixtures import SMALL_FIELD
from test_training_run import CrashAt, tiny_config, tiny_raw
from typer.testing import CliRunner

from sparsessp_bmz.data.config import SimulationSettings
from sparsessp_bmz.data.simulate.writer import simulate
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.progress import is_verbose, step_budget
from sparsessp_bmz.training.run import train

#: What a quiet training must never print (banner, advertising, Lightning's epoch bar, the
#: checkpoint message, negative totals).
BANNED = (
    "GPU available",
    "TPU available",
    "Tip:",
    "litmodels",
    "litlogger",
    "weights_only",
    "Restoring states",
    "Epoch ",
    "/-",
)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = SimulationSettings(cells=4, structures=("dna",), seed=3, shape=SMALL_FIELD)
    return simulate(settings, tmp_path_factory.mktemp("simulated"))


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich lays a captured (non-terminal) console out 80 columns wide; keep the bar on one line."""
    monkeypatch.setenv("COLUMNS", "200")


def _printed(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    """Everything the run showed: stdout, stderr and log records (pytest takes Lightning's
    records through the root logger instead of letting Lightning's own handler print them)."""
    out, err = capfd.readouterr()
    return out + err + caplog.text


def _assert_quiet(printed: str) -> None:
    for banned in BANNED:
        assert banned not in printed, f"{banned!r} was printed:\n{printed}"


def test_a_quiet_training_prints_one_bar_and_nothing_from_lightning(
    manifest: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tiny_config(manifest, tmp_path / "run", "trainer.progress_bar=true")
    result = train(config, verbose=False)
    printed = _printed(capfd, caplog)
    _assert_quiet(printed)
    bar = [line for line in printed.splitlines() if "steps" in line]
    assert len(bar) == 1, printed  # captured output is not a terminal: the final state, once
    assert "3/3 steps" in bar[0]
    assert f"val_mse {result.best_val_mse:.4f}" in bar[0]


@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        (("optim.max_steps=5",), ("5/5 steps", "epoch 3 ")),  # 2 steps per epoch
        (("optim.max_steps=-1", "optim.max_epochs=2"), ("4/4 steps", "epoch 2/2")),
        (("optim.max_steps=3", "optim.max_epochs=4"), ("3/3 steps", "epoch 2/4")),
    ],
    ids=["step-budget", "epoch-budget", "sooner-of-both"],
)
def test_the_bar_counts_steps_against_the_step_budget(
    manifest: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    overrides: tuple[str, ...],
    shown: tuple[str, ...],
) -> None:
    config = tiny_config(manifest, tmp_path / "run", "trainer.progress_bar=true", *overrides)
    train(config, verbose=False)
    printed = _printed(capfd, caplog)
    for text in shown:
        assert text in printed, printed
    _assert_quiet(printed)


def test_step_budget_is_the_sooner_of_steps_and_epochs() -> None:
    assert step_budget(20, -1, 16) == 20
    assert step_budget(-1, 3, 16) == 48
    assert step_budget(100, 2, 16) == 32
    assert step_budget(-1, -1, 16) is None
    assert step_budget(-1, 3, float("inf")) is None


def test_progress_bar_false_prints_no_bar(
    manifest: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    train(tiny_config(manifest, tmp_path / "run"), verbose=False)  # tiny: progress_bar false
    out, err = capfd.readouterr()
    assert "steps" not in out + err


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_resuming_loads_the_checkpoint_without_weights_only_messages(
    manifest: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    verbose: bool,
) -> None:
    config = tiny_config(manifest, tmp_path / "run", "optim.max_steps=6")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, callbacks=[CrashAt(3)], verbose=verbose)
    caplog.clear()
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = train(config, verbose=verbose)  # verbose: Lightning's INFO lines are on
    assert resumed.status == "resumed"
    assert not [w for w in caught if "weights_only" in str(w.message)]
    assert "weights_only" not in _printed(capfd, caplog)
    for checkpoint in (resumed.last_checkpoint, resumed.best_checkpoint):
        torch.load(checkpoint, map_location="cpu", weights_only=True)  # safe to load as is


def test_verbose_shows_lightnings_banner_and_model_summary(
    manifest: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tiny_config(manifest, tmp_path / "run", "trainer.progress_bar=true")
    level = logging.getLogger("lightning.pytorch").level
    train(config, verbose=True)
    printed = _printed(capfd, caplog)
    assert "GPU available" in printed
    assert "Trainable params" in printed
    assert "/-" not in printed  # Lightning's bar, without its negative epoch total
    assert logging.getLogger("lightning.pytorch").level == level  # restored


def test_train_command_verbose_flag_shows_the_banner_for_that_command_only(
    manifest: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import yaml

    from sparsessp_bmz.cli import app

    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(tiny_raw(manifest, tmp_path / "run")))
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(preset), "--verbose"])
    assert result.exit_code == 0, result.output
    assert "GPU available" in caplog.text + result.output
    assert not is_verbose()
    caplog.clear()
    again = runner.invoke(app, ["train", str(preset), "optim.max_steps=4"])
    assert again.exit_code == 0, again.output
    _assert_quiet(caplog.text + again.output)


@pytest.mark.parametrize("command", ["train", "matrix", "demo"])
def test_training_commands_offer_verbose(command: str) -> None:
    from sparsessp_bmz.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--verbose" in result.output


def test_tensorboard_logger_without_the_package_is_one_clear_error(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    missing = {"tensorboard", "tensorboardX"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a)
    )
    config = tiny_config(manifest, tmp_path / "run", "trainer.logger=tensorboard")
    with pytest.raises(UserInputError, match="pip install tensorboard") as error:
        train(config)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()  # refused before any work


def test_tensorboard_logger_writes_event_files_beside_the_unchanged_csv_history(
    manifest: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard")
    steps = ("optim.max_steps=4", "trainer.log_every_n_steps=1")
    csv_only = train(tiny_config(manifest, tmp_path / "csv", *steps))
    config = tiny_config(manifest, tmp_path / "tb", "trainer.logger=tensorboard", *steps)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, callbacks=[CrashAt(3)])
    both = train(config)  # resumed: the history stays whole in both loggers
    assert list(csv.DictReader(both.metrics_csv.open())) == list(
        csv.DictReader(csv_only.metrics_csv.open())
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(both.run_dir / "tensorboard"))
    events.Reload()  # all event files of the folder; the resume purged the crashed run's tail
    assert [event.step for event in events.Scalars("train_loss_step")] == [0, 1, 2, 3]
