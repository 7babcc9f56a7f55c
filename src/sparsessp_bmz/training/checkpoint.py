"""Reading a training checkpoint back as a `TrainedModel`, with torch alone.

Prediction, evaluation and export need only the .ckpt file: the config (network spec, data and
normalisation settings) is stored in it as plain JSON-able dicts, so `torch.load` can run with
`weights_only=True` and nothing from the training code has to be unpickled.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.trained import TrainedModel

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
    facts = checkpoint.get(FACTS_KEY, {})
    metrics = {
        name: float(facts[name])
        for name in ("val_mse", "best_val_mse")
        if name in facts and math.isfinite(float(facts[name]))
    }
    training: dict[str, str | int | float] = {
        "checkpoint": path.name,
        "run": config.run_dir().name,
        "global_step": int(facts.get("global_step", checkpoint.get("global_step", 0))),
        "epoch": int(facts.get("epoch", checkpoint.get("epoch", 0))),
        "loss": config.optim.loss,
        "lr": config.optim.lr,
        "batch_size": config.optim.batch_size,
        "precision": config.trainer.precision,
        "seed": config.trainer.seed,
        "lightning": str(checkpoint.get("pytorch-lightning_version", "")),
    }
    if "saved_at" in facts:
        training["saved_at"] = str(facts["saved_at"])
    return TrainedModel(
        spec=config.model,
        net=net,
        voxel_size_um=tuple(config.data.voxel_size_um),  # type: ignore[arg-type]
        manifest=config.data.manifest,
        structures=config.structures,
        metrics=metrics,
        training=training,
    )
