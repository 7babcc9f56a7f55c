"""Reading a training checkpoint back as a `TrainedModel`, with torch alone.

Prediction, evaluation and export need only the .ckpt file: the config (network spec, data and
normalisation settings) is stored in it as plain JSON-able dicts, so `torch.load` can run with
`weights_only=True` and nothing from the training code has to be unpickled.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import ValidationError

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.trained import TrainedModel, TrainingFacts

if TYPE_CHECKING:
    from sparsessp_bmz.training.config import TrainConfig

#: Marks our checkpoints, so a foreign .ckpt is refused with a clear message.
CHECKPOINT_FORMAT = "sparsessp-bmz/train-1"
#: Checkpoint key of the facts `load_trained` reports (metrics, progress).
FACTS_KEY = "sparsessp_bmz"
#: Prefix of the network's parameters in the Lightning module's state dict.
NET_PREFIX = "net."


class DamagedCheckpoint(UserInputError):
    """A checkpoint that is not (or no longer) what `sparsessp-bmz train` wrote; `reason` is the
    short why, for messages that name the file themselves (`training.run` resuming)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


#: What every message about an edited or damaged checkpoint tells the user to do.
UNTOUCHED = (
    "use the checkpoint as `sparsessp-bmz train` wrote it (the run's best.ckpt or last.ckpt), "
    "or train again"
)


def _tampered(path: Path, what: str) -> DamagedCheckpoint:
    return DamagedCheckpoint(
        f"checkpoint {path}: {what}; the checkpoint was edited or damaged - {UNTOUCHED}", what
    )


def _is_package(path: Path) -> bool:
    """A zip whose root holds a package description (a torch checkpoint's members all sit in
    one archive folder)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name in ("rdf.yaml", "bioimageio.yaml") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def read_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """The raw checkpoint dict, or a UserInputError saying why it is not one of ours.

    `mmap` maps the tensors instead of reading them (cheap checks of big checkpoints)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(
            f"checkpoint {path} does not exist; give a .ckpt written by `sparsessp-bmz train` "
            f"(RUN_DIR/checkpoints/best.ckpt)"
        )
    if _is_package(path):
        raise UserInputError(
            f"{path} is a bioimage.io package, not a training checkpoint; run it with "
            "bioimageio.core (`bioimageio predict PKG --inputs stack.tif --blockwise 2`) or load "
            "it in Python with sparsessp_bmz.bmz.export.load_package; give a .ckpt here"
        )
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception:
            if not mmap:
                raise
            # mmap refuses anything but torch's zip format with its own message; read it whole
            # for the real reason (or for an old, legacy-format file)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or non-torch files
        first = _gist(err, 120).split(". ")[0]
        reason = f"it does not load as a PyTorch checkpoint ({first})"
        raise DamagedCheckpoint(
            f"checkpoint {path} cannot be read ({_gist(err)}); it is corrupt or not a PyTorch "
            f"file - use the run's best.ckpt or last.ckpt",
            reason,
        ) from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or hparams.get("format") != CHECKPOINT_FORMAT:
        raise DamagedCheckpoint(
            f"checkpoint {path} was not written by `sparsessp-bmz train` (no "
            f"'{CHECKPOINT_FORMAT}' hyper-parameters); train a model with sparsessp-bmz first",
            f"it holds no '{CHECKPOINT_FORMAT}' hyper-parameters",
        )
    return checkpoint


def _stored_config(path: Path, checkpoint: dict[str, Any]) -> TrainConfig:
    from sparsessp_bmz.training.config import TrainConfig

    try:
        return TrainConfig.model_validate(checkpoint["hyper_parameters"]["config"])
    except (KeyError, TypeError, ValidationError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DamagedCheckpoint(
            f"checkpoint {path}: its stored training config is invalid ({first}); it was edited, "
            f"damaged or written by an incompatible version of sparsessp-bmz - {UNTOUCHED}",
            f"its stored training config is invalid ({first})",
        ) from err


def _network(path: Path, checkpoint: dict[str, Any], config: TrainConfig) -> torch.nn.Module:
    """The stored network with the stored weights; refused when they do not fit each other."""
    from sparsessp_bmz.nets import build_net

    try:
        net = build_net(config.model)
    except (ValueError, TypeError, RuntimeError) as err:
        raise _tampered(
            path, f"its stored network {config.model.model_id} cannot be built ({_gist(err)})"
        ) from err
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise _tampered(path, "it holds no state_dict of weights")
    weights = {
        key.removeprefix(NET_PREFIX): value
        for key, value in state.items()
        if isinstance(key, str) and key.startswith(NET_PREFIX)
    }
    try:
        net.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError, ValueError) as err:
        raise _tampered(
            path,
            f"the weights do not fit the network {config.model.model_id} it describes "
            f"({_gist(err)}); its stored config was edited or the weights replaced",
        ) from err
    return net


def load_trained(path: Path) -> TrainedModel:
    """The network of a training checkpoint in eval mode on the CPU, with its description."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    config = _stored_config(path, checkpoint)
    facts = _facts(path, checkpoint, config)
    net = _network(path, checkpoint, config)
    net.eval()
    return TrainedModel(spec=config.model, net=net, data=config.data_settings, facts=facts)


def resumable_step(path: Path, config: TrainConfig) -> int:
    """The step `train` resumes `config` from at checkpoint `path`, after checking that the file
    loads, is a checkpoint of this very run (same config hash: not edited, not another run's),
    holds well-formed facts and weights that fit the network. DamagedCheckpoint says why not."""
    path = Path(path)
    checkpoint = read_checkpoint(path, mmap=True)
    stored = _stored_config(path, checkpoint)
    if stored.identity() != config.identity():
        raise _tampered(
            path,
            f"its stored config (hash {stored.identity()}) is not this run's "
            f"({config.identity()}): edited, or copied from another run",
        )
    _check_facts(path, checkpoint)
    step = checkpoint.get("global_step")
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        raise _tampered(path, f"its global_step is {step!r}, not a whole number >= 0")
    _network(path, checkpoint, stored)
    return step


def _gist(err: Exception, limit: int = 240) -> str:
    """An error's text on one line without terminal colour codes (torch's unpickling errors carry
    both paragraphs and ANSI escapes), cut to `limit` characters."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(err)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> float | None:
    """A finite number, or None (inf before the first validation, or not recorded)."""
    if not _is_number(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _check_facts(path: Path, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The stored facts, refused when they are not what training writes: a mapping of numbers
    (steps and epochs whole and not negative) and an ISO time stamp. Absent values are allowed
    (older checkpoints), values of the wrong kind are not."""
    facts = checkpoint.get(FACTS_KEY, {})
    if not isinstance(facts, dict):
        raise _tampered(path, f"its stored facts ({FACTS_KEY}) are not a mapping")
    for key, value in (
        ("global_step", facts.get("global_step", checkpoint.get("global_step"))),
        ("epoch", facts.get("epoch", checkpoint.get("epoch"))),
    ):
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and value >= 0
        ):
            raise _tampered(path, f"its stored {key} is {value!r}, not a whole number >= 0")
    for key in ("val_mse", "best_val_mse"):
        value = facts.get(key)
        if value is not None and not _is_number(value):
            raise _tampered(path, f"its stored {key} is {value!r}, not a number")
    if facts.get("saved_at") is not None and not isinstance(facts["saved_at"], str):
        raise _tampered(path, f"its stored saved_at is {facts['saved_at']!r}, not a time stamp")
    return facts


def _facts(path: Path, checkpoint: dict[str, Any], config: TrainConfig) -> TrainingFacts:
    """The typed facts of a checkpoint; values an older checkpoint lacks stay unset."""
    facts = _check_facts(path, checkpoint)
    saved_at = None
    if isinstance(facts.get("saved_at"), str):
        try:
            saved_at = datetime.fromisoformat(facts["saved_at"])
        except ValueError:
            saved_at = None
    return TrainingFacts(
        checkpoint=path,
        run=config.run_dir().name,
        global_step=int(facts.get("global_step", checkpoint.get("global_step")) or 0),
        epoch=int(facts.get("epoch", checkpoint.get("epoch")) or 0),
        loss=config.optim.loss,
        lr=config.optim.lr,
        batch_size=config.optim.batch_size,
        precision=str(config.trainer.precision),
        seed=config.trainer.seed,
        lightning=str(checkpoint.get("pytorch-lightning_version", "")),
        saved_at=saved_at,
        val_mse=_finite(facts.get("val_mse")),
        best_val_mse=_finite(facts.get("best_val_mse")),
    )
