"""The validated description of one training run, read from YAML presets with dotted overrides.

One file (optionally inheriting from a `base:` preset) plus `key=value` overrides on the command
line give the whole run; every key is checked before any data is read, so a typo fails in a
second instead of after hours on a cluster. Paths in a preset are taken relative to the current
directory (presets are run from the repository root), except `base:`, which is relative to the
file that names it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.spec import ModelSpec, Topology

Loss = Literal["mse", "spotlight"]
Schedule = Literal["constant", "warmup_cosine"]
MetricsLogger = Literal["csv", "tensorboard"]

#: Top-level sections of a training config (plus `base`, consumed while loading).
SECTIONS = ("model", "data", "optim", "trainer")


class OptimSettings(BaseModel):
    """How long and how fast to learn, and on which loss.

    `max_epochs` may be a map topology -> epochs, because the paper trains 3D nets for 1000
    epochs, hybrids for 3000 and 2D nets for 7000. Training stops at whichever of `max_epochs` and
    `max_steps` comes first (-1 / None: no limit from that side).

    The defaults of `early_stopping_patience` and `min_foreground_fraction` are meant for small
    data sets (README, "Training recipe"): early stopping on validation MSE (a small data set
    overfits long before a generous budget ends) and training crops that contain foreground
    (Spotlight: crops of empty background teach the network to predict background).
    `schedule: warmup_cosine` (a short linear warm-up, then cosine decay to 0) is available but
    not the default: on `benchmarks/learning_evidence.py`'s hard data it cost more than half the
    test R² at a 100-step budget (0.080 against 0.210 with a constant rate, 2 seeds) and gained a
    little at 300 steps (0.422 against 0.398, 3 seeds); a default must not fail short runs.
    `training/paper.yaml` sets the paper's own: constant lr, no early stopping, any crop.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    lr: float = Field(1e-4, gt=0, description="Adam learning rate (paper: 1e-4).")
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1, description="Patches per step and device (paper: 8).")
    max_epochs: int | dict[Topology, int] | None = Field(
        None, description="Epochs, or a map topology -> epochs; None: limited by max_steps only."
    )
    max_steps: int = Field(-1, ge=-1, description="Optimiser steps; -1 means no step limit.")
    val_every_n_epochs: int = Field(20, ge=1, description="Validate every N epochs (paper: 20).")
    val_samples: int = Field(
        32, ge=1, description="Fixed validation crops (same crops every time, no flips)."
    )
    bn_recalibration_batches: int = Field(
        16,
        ge=0,
        description="Training batches that recompute batch-norm statistics before each "
        "validation (precise BN); 0 keeps the running averages.",
    )
    schedule: Schedule = Field(
        "constant",
        description="Learning-rate schedule: constant (the paper's), or a linear warm-up over "
        "warmup_fraction of the step budget then cosine decay to 0 at its end.",
    )
    warmup_fraction: float = Field(
        0.05, ge=0, lt=1, description="Share of the step budget spent warming up (warmup_cosine)."
    )
    early_stopping_patience: int | None = Field(
        10,
        ge=1,
        description="Validations in a row without a new best validation MSE before training "
        "stops (the best checkpoint is kept); None: train to the budget.",
    )
    min_foreground_fraction: float = Field(
        0.001,
        ge=0,
        lt=1,
        description="Training crops must have at least this share of target voxels at or above "
        "the volume's Otsu threshold (Spotlight: 0.1%); up to 10 crops are drawn, else the one "
        "with most foreground is used. 0: any crop.",
    )
    loss: Loss = "mse"
    spotlight_lambda: float = Field(0.5, ge=0, le=1, description="Weight of the masked MSE.")
    spotlight_k: float = Field(-0.95, gt=-1, lt=1, description="Soft-threshold sharpness.")

    @model_validator(mode="after")
    def _has_a_limit(self) -> OptimSettings:
        if self.max_epochs is None and self.max_steps == -1:
            raise ValueError("set optim.max_epochs or optim.max_steps: training must end")
        if isinstance(self.max_epochs, int) and self.max_epochs < 1:
            raise ValueError(f"max_epochs must be at least 1, got {self.max_epochs}")
        if isinstance(self.max_epochs, dict) and min(self.max_epochs.values(), default=1) < 1:
            raise ValueError(f"epochs per topology must be at least 1, got {self.max_epochs}")
        if self.max_steps == 0:
            raise ValueError("max_steps must be positive (or -1 for no step limit), got 0")
        return self

    def epochs_for(self, topology: str) -> int:
        """Epoch budget of a network of this topology (-1: no epoch limit)."""
        if self.max_epochs is None:
            return -1
        if isinstance(self.max_epochs, int):
            return self.max_epochs
        if topology not in self.max_epochs:
            raise UserInputError(
                f"optim.max_epochs maps {sorted(self.max_epochs)} but not topology '{topology}'; "
                f"add optim.max_epochs.{topology}=N"
            )
        return self.max_epochs[topology]  # type: ignore[index]


class TrainerSettings(BaseModel):
    """Where and how Lightning runs: devices, precision, parallelism, seed and output folder.

    `accelerator`, `devices`, `precision` and `strategy` are handed to `lightning.Trainer`
    unchanged (e.g. `accelerator=gpu devices=4 strategy=ddp precision=bf16-mixed`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    precision: str = "32-true"
    strategy: str = "auto"
    deterministic: bool | None = Field(
        None, description="torch deterministic algorithms; None: on for CPU, off on GPUs."
    )
    seed: int = Field(0, description="Seed of the weight initialisation (crops: data.seed).")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    output_dir: Path = Field(Path("training/runs"), description="Runs go to OUTPUT_DIR/<run>.")
    run_dir: Path | None = Field(
        None, description="Explicit run folder; default OUTPUT_DIR/<model id>-<config hash>."
    )
    progress_bar: bool = Field(
        True,
        description="One progress bar per run (steps/step budget, loss, val_mse); false: none. "
        "`--verbose` shows Lightning's own bar instead.",
    )
    log_every_n_steps: int = Field(10, ge=1)
    logger: MetricsLogger = Field(
        "csv",
        description="csv: logs/metrics.csv only; tensorboard: also TensorBoard event files in "
        "RUN/tensorboard (`tensorboard --logdir RUN`); needs `pip install tensorboard`. "
        "logs/metrics.csv is written either way.",
    )


class TrainConfig(BaseModel):
    """Everything one training run needs: network, data, optimisation, hardware."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelSpec
    data: DataSettings
    optim: OptimSettings
    trainer: TrainerSettings = TrainerSettings()

    @model_validator(mode="after")
    def _data_matches_model(self) -> TrainConfig:
        wanted = self.model.structures
        if self.data.structures is not None and tuple(self.data.structures) != tuple(wanted):
            raise ValueError(
                f"data.structures {list(self.data.structures)} must be the structures the network "
                f"predicts, {list(wanted)} (model.organelle, or model.tasks for a multi-task "
                f"network); leave data.structures unset"
            )
        return self

    @property
    def structures(self) -> tuple[str, ...]:
        """Structures the run trains on, in task order."""
        return self.model.structures

    @property
    def data_settings(self) -> DataSettings:
        """The data settings restricted to the structures of the network."""
        return self.data.model_copy(update={"structures": self.structures})

    @property
    def max_epochs(self) -> int:
        """Epoch budget for this network's topology (-1: none)."""
        return self.optim.epochs_for(self.model.topology)

    def identity(self) -> str:
        """Short hash of what determines the weights, budget and hardware layout excluded.

        Two commands that would train the same network share a run folder, so re-running resumes,
        and extending max_epochs/max_steps continues the same run rather than starting afresh.
        """
        optim = self.optim.model_dump(mode="json", exclude={"max_epochs", "max_steps"})
        payload = {
            "model": self.model.model_dump(mode="json"),
            "data": self.data.model_copy(
                update={"manifest": self.data.manifest.resolve()}
            ).model_dump(mode="json"),
            "optim": optim,
            "seed": self.trainer.seed,
            "precision": self.trainer.precision,
        }
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]

    def run_dir(self) -> Path:
        """The run's folder: explicit, or derived deterministically from the config."""
        if self.trainer.run_dir is not None:
            return self.trainer.run_dir
        return self.trainer.output_dir / f"{self.model.model_id}-{self.identity()}"


# ---- loading -----------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserInputError(f"config {path} does not exist; give the path of a YAML preset")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserInputError(f"{path}: not valid YAML ({err})".replace("\n", " ")) from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserInputError(f"{path}: the top level must be a mapping of {', '.join(SECTIONS)}")
    return loaded


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`update` over `base`; nested mappings merge, anything else replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_raw(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset as a plain mapping with its `base:` chain merged in (base first)."""
    path = Path(path)
    if path.resolve() in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise UserInputError(f"presets inherit from each other in a cycle: {chain}")
    raw = _read_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise UserInputError(f"{path}: base must be the path of another preset, got {base!r}")
    parent = load_raw(path.parent / base, (*_seen, path.resolve()))
    return deep_merge(parent, raw)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=3e-4' -> (['optim', 'lr'], 3e-4); values are read as YAML scalars/lists."""
    key, sep, value = text.partition("=")
    parts = [part.strip() for part in key.split(".")]
    if not sep or len(parts) < 2 or not all(parts):
        raise UserInputError(
            f"override {text!r} must look like section.key=value, e.g. model.ratio=4 or "
            f"optim.max_steps=50 (sections: {', '.join(SECTIONS)})"
        )
    if parts[0] not in SECTIONS:
        raise UserInputError(
            f"override {text!r}: unknown section '{parts[0]}'; allowed: {', '.join(SECTIONS)}"
        )
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise UserInputError(f"override {text!r}: the value is not valid YAML ({err})") from err
    return parts, parsed


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """The mapping with each `dotted.key=value` set (intermediate mappings created as needed)."""
    result = dict(raw)
    for text in overrides:
        parts, value = parse_override(text)
        nested: dict[str, Any] = value
        for part in reversed(parts[1:]):
            nested = {part: nested}
        update = {parts[0]: nested}
        result = deep_merge(result, update)
    return result


def _where(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def _allowed(location: tuple[int | str, ...]) -> str:
    """Names accepted at a config location, for 'unknown key' errors."""
    model: type[BaseModel] | None = TrainConfig
    for part in location[:-1]:
        field = model.model_fields.get(str(part)) if model is not None else None
        annotation = field.annotation if field is not None else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return ", ".join(model.model_fields) if model is not None else ""


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line naming the first bad key, what was given and what is allowed."""
    first = err.errors()[0]
    location = tuple(first["loc"])
    key = _where(location)
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'; allowed here: {_allowed(location)}"
    if first["type"] == "missing":
        return f"{source}: '{key}' is required"
    given = first.get("input")
    message = first["msg"].removeprefix("Value error, ")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    return f"{source}: {key}: {message}{shown}"


def config_from_mapping(raw: Mapping[str, Any], source: str) -> TrainConfig:
    """Validate a merged mapping; `source` names the file (and overrides) in errors."""
    try:
        return TrainConfig.model_validate(dict(raw))
    except ValidationError as err:
        raise UserInputError(format_validation_error(err, source)) from err


def load_config(path: Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a preset (with its base chain), apply `key=value` overrides, validate."""
    overrides = list(overrides)
    raw = apply_overrides(load_raw(Path(path)), overrides)
    source = str(path) + (f" with overrides {' '.join(overrides)}" if overrides else "")
    return config_from_mapping(raw, source)
