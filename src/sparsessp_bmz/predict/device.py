"""The torch device prediction runs on, checked before any work."""

from __future__ import annotations

import torch

from sparsessp_bmz.errors import UserInputError


def resolve_device(device: str | torch.device) -> torch.device:
    """`device` as a torch device that exists on this machine, or one clear error (before any
    work: torch itself fails only when the network is moved, with a traceback)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as err:
        raise UserInputError(
            f"device {str(device)!r} is not a torch device; use cpu, cuda, cuda:N or mps"
        ) from err
    if parsed.type == "cpu":
        return parsed
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(
                f"device {str(device)!r}: CUDA is not available here (torch {torch.__version__}, "
                "no usable NVIDIA GPU or a CPU-only build); use --device cpu"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise UserInputError(
                f"device {str(device)!r}: this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1}); pick one of them or use --device cpu"
            )
        return parsed
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserInputError(
                f"device {str(device)!r}: Apple MPS is not available here; use --device cpu"
            )
        return parsed
    raise UserInputError(
        f"device {str(device)!r} is not supported for prediction; use cpu, cuda, cuda:N or mps"
    )


def net_device(net: torch.nn.Module) -> torch.device:
    """Where the network's parameters live (CPU for a network without any)."""
    for parameter in net.parameters():
        return parameter.device
    return torch.device("cpu")
