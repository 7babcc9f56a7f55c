"""Reading a training checkpoint back as a `TrainedModel`, with torch alone.

Prediction, evaluation and export need only the .ckpt file: the config (network spec, data and
normalisation settings) is stored in it as plain JSON-able dicts, so `torch.load` can run with
`weights_only=True` and nothing from the training code has to be unpickled.
"""

from __future__ import annotations

import math
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


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The raw checkpoint dict, or a UserInputError saying why it is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(
            f"checkpoint {path} does not exist; give a .ckpt written by `sparsessp-bmz train` "
            f"(RUN_DIR/checkpoints/best.ckpt)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or non-torch files
        raise UserInputError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); it is corrupt or "
            f"not a PyTorch file - use the run's best.ckpt or last.ckpt"
        ) from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or hparams.get("format") != CHECKPOINT_FORMAT:
        raise UserInputError(
            f"checkpoint {path} was not written by `sparsessp-bmz train` (no "
            f"'{CHECKPOINT_FORMAT}' hyper-parameters); train a model with sparsessp-bmz first"
        )
    return checkpoint


def load_trained(path: Path) -> TrainedModel:
    """The network of a training checkpoint in eval mode on the CPU, with its description."""
    from sparsessp_bmz.nets import build_net
    from sparsessp_bmz.training.config import TrainConfig

    path = Path(path)
    checkpoint = read_checkpoint(path)
    try:
        config = TrainConfig.model_validate(checkpoint["hyper_parameters"]["config"])
    except (KeyError, ValidationError) as err:
        raise UserInputError(
            f"checkpoint {path}: its stored training config is invalid ({err}); it was written "
            f"by an incompatible version of sparsessp-bmz"
        ) from err
    net = build_net(config.model)
    weights = {
        key.removeprefix(NET_PREFIX): value
        for key, value in checkpoint.get("state_dict", {}).items()
        if key.startswith(NET_PREFIX)
    }
    try:
        net.load_state_dict(weights)
    except RuntimeError as err:
        raise UserInputError(
            f"checkpoint {path}: the weights do not fit the network {config.model.model_id} "
            f"it describes ({str(err).splitlines()[0]})"
        ) from err
    net.eval()
    return TrainedModel(
        spec=config.model,
        net=net,
        data=config.data_settings,
        facts=_facts(path, checkpoint, config),
    )


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _facts(path: Path, checkpoint: dict[str, Any], config: TrainConfig) -> TrainingFacts:
    """The typed facts of a checkpoint; values a damaged or older checkpoint lacks stay unset."""
    facts = checkpoint.get(FACTS_KEY, {})
    saved_at = None
    if isinstance(facts.get("saved_at"), str):
        try:
            saved_at = datetime.fromisoformat(facts["saved_at"])
        except ValueError:
            saved_at = None
    return TrainingFacts(
        checkpoint=path,
        run=config.run_dir().name,
        global_step=int(facts.get("global_step", checkpoint.get("global_step", 0))),
        epoch=int(facts.get("epoch", checkpoint.get("epoch", 0))),
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
