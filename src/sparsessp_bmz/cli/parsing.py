"""Small argument parsers shared by several commands, with errors that name the option."""

from __future__ import annotations

from sparsessp_bmz.errors import UserInputError


def parse_shape(text: str, option: str) -> tuple[int, int, int]:
    """'32x128x128' -> (32, 128, 128)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserInputError(f"{option} must look like DxHxW with positive integers, got {text!r}")
    return shape  # type: ignore[return-value]


def parse_choices(text: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    """'a,b' or 'all' -> the chosen names, each checked against `allowed`."""
    if text == "all":
        return allowed
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise UserInputError(
            f"{option} got {text!r}; choose from {', '.join(allowed)} (comma-separated) or 'all'"
        )
    return chosen


def parse_ratio(ratio: int, option: str) -> int:
    """A sparsity ratio the networks support (1, 2, 4 or 8)."""
    from sparsessp_bmz.spec import SPARSITY_RATIOS

    if ratio not in SPARSITY_RATIOS:
        raise UserInputError(
            f"{option} {ratio} is not a sparsity ratio the networks support; use one of "
            f"{', '.join(map(str, SPARSITY_RATIOS))}"
        )
    return ratio
