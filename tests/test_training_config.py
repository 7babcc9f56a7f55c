"""Training configs: presets, inheritance, dotted overrides, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.config import load_config
from sparsessp_bmz.training.losses import otsu_threshold, spotlight_loss, tunable_sigmoid

PRESETS = Path(__file__).resolve().parents[1] / "training"

BASE = """
model: {organelle: dna, ratio: 2, topology: 3to2d, width: 0.125, units: 16, patch: [8, 32, 32]}
data: {manifest: cells/manifest.csv}
optim: {max_steps: 10}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write(tmp_path / "base.yaml", BASE)


def test_overrides_set_nested_keys_with_yaml_typed_values(base: Path) -> None:
    config = load_config(base, ["model.ratio=4", "optim.lr=3e-4", "model.patch=[16,32,32]"])
    assert config.model.ratio == 4
    assert config.optim.lr == pytest.approx(3e-4)
    assert config.model.patch == (16, 32, 32)


def test_a_preset_inherits_its_base_and_overrides_parts_of_it(tmp_path: Path, base: Path) -> None:
    (tmp_path / "sub").mkdir()
    child = write(tmp_path / "sub" / "child.yaml", "base: ../base.yaml\noptim: {lr: 0.01}\n")
    config = load_config(child)
    assert config.optim.lr == 0.01
    assert config.optim.max_steps == 10
    assert config.model.organelle == "dna"


def test_inheritance_cycles_are_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(UserInputError, match="cycle"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", r"unknown key 'optim.lrr'; allowed here: lr, weight_decay"),
        ("modle.ratio=4", r"unknown section 'modle'; allowed: model, data, optim, trainer"),
        ("model.ratio=3", r"model.ratio: Input should be 1, 2, 4 or 8 \(got 3\)"),
        ("optim.loss=l1", r"optim.loss: Input should be 'mse' or 'spotlight'"),
        ("trainer.logger=wandb", r"trainer.logger: Input should be 'csv' or 'tensorboard'"),
        ("model.patch=[8,30,32]", r"multiples of 16"),
        ("ratio", r"must look like section.key=value"),
        ("data.structures=[mitochondria]", r"must be the structures the network predicts"),
    ],
)
def test_bad_overrides_name_the_key_and_what_is_allowed(
    base: Path, override: str, message: str
) -> None:
    with pytest.raises(UserInputError, match=message):
        load_config(base, [override])


def test_training_must_have_an_end(base: Path) -> None:
    with pytest.raises(UserInputError, match=r"max_epochs or optim\.max_steps"):
        load_config(base, ["optim.max_steps=-1"])


def test_a_missing_preset_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_paper_preset_gives_each_topology_its_epochs() -> None:
    epochs = {
        topology: load_config(PRESETS / "paper.yaml", [f"model.topology={topology}"]).max_epochs
        for topology in ("3d", "2to3d", "3to2d", "2d")
    }
    assert epochs == {"3d": 1000, "2to3d": 3000, "3to2d": 3000, "2d": 7000}
    paper = load_config(PRESETS / "paper.yaml")
    assert (paper.optim.lr, paper.optim.batch_size, paper.optim.val_every_n_epochs) == (
        1e-4,
        8,
        20,
    )


def test_demo_preset_is_a_narrow_network_on_small_patches() -> None:
    demo = load_config(PRESETS / "demo.yaml")
    assert demo.model.width <= 0.5 and demo.model.units <= 64
    assert demo.model.patch[1] <= 64 and demo.trainer.accelerator == "cpu"


def test_run_folder_follows_the_config_but_not_the_step_budget(base: Path) -> None:
    first = load_config(base)
    assert load_config(base).run_dir() == first.run_dir()
    assert load_config(base, ["optim.max_steps=99"]).run_dir() == first.run_dir()
    assert load_config(base, ["optim.lr=0.5"]).run_dir() != first.run_dir()
    assert first.run_dir().name.startswith("sparsessp-dna-r2-3to2d-")


def test_otsu_threshold_separates_two_intensity_populations() -> None:
    generator = torch.Generator().manual_seed(0)
    low = torch.randn(1, 4000, generator=generator)
    high = torch.randn(1, 1000, generator=generator) + 6
    threshold = float(otsu_threshold(torch.cat([low, high], dim=1)))
    assert 2.0 < threshold < 4.0


def test_tunable_sigmoid_fixes_zero_and_one() -> None:
    x = torch.tensor([0.0, 1.0, 0.5])
    y = tunable_sigmoid(x, -0.95)
    assert y[0] == 0 and y[1] == pytest.approx(1.0) and y[2] > 0.9


def test_spotlight_loss_prefers_the_right_foreground() -> None:
    target = torch.zeros(1, 1, 4, 16, 16)
    target[..., 4:12, 4:12] = 3.0
    right = spotlight_loss(target.clone(), target)
    wrong = spotlight_loss(torch.roll(target, 6, dims=-1), target)
    assert right < wrong


def test_train_command_reports_a_bad_override_as_one_line_and_exit_code_2(
    base: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sparsessp_bmz.cli import main

    monkeypatch.setattr("sys.argv", ["sparsessp-bmz", "train", str(base), "optim.lrr=1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown key 'optim.lrr'" in error
