"""Which package variants a model can be exported as, and the id each one gets.

One trained network serves several consumers that disagree about shapes (see "Consumers" in the
design brief): bioimageio.core and deepImageJ take the sparse stack and return an r times deeper
one (`standard`); ilastik assumes the output has the input's shape, so the `dense` variant takes
a stack on the target z grid and keeps every r-th slice itself; QuPath runs only 2D models, so a
model trained on single planes ships as a `plane` package with (batch, channel, y, x) axes.
"""

from __future__ import annotations

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.nets.variants import VARIANTS, Variant
from sparsessp_bmz.spec import ModelSpec

#: Appended to the model id, so every variant is its own package (a plane model's id already
#: ends in `-plane`, and planes are its only variant).
ID_SUFFIX: dict[Variant, str] = {"standard": "", "dense": "-dense", "plane": ""}
#: Variants whose output is scaled for a 0..1 display (ilastik shows outputs as probabilities).
DISPLAY_SCALED: frozenset[Variant] = frozenset({"dense", "plane"})


def available_variants(spec: ModelSpec) -> tuple[Variant, ...]:
    """Plane models export as planes only; volume models as standard or dense-grid packages."""
    return ("plane",) if spec.is_plane else ("standard", "dense")


def default_variants(spec: ModelSpec) -> tuple[Variant, ...]:
    """What `export` makes when no variant is asked for."""
    return available_variants(spec)[:1]


def parse_variants(text: str) -> tuple[Variant, ...]:
    """`standard,dense` -> ('standard', 'dense'); an unknown name is one clear error."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise UserInputError(
            f"--variants {text!r}: unknown variant(s) {unknown or [text]}; choose from "
            f"{', '.join(VARIANTS)} (comma-separated)"
        )
    return names  # type: ignore[return-value]


def variants_for(spec: ModelSpec, wanted: tuple[Variant, ...] | None) -> tuple[Variant, ...]:
    """The variants to build for one model: `wanted` where it applies, else the default.

    A variant that does not fit the model (a plane package of a volume model, a dense package of
    a plane model) is refused with the reason, before any work.
    """
    if wanted is None:
        return default_variants(spec)
    allowed = available_variants(spec)
    refused = [variant for variant in wanted if variant not in allowed]
    if refused:
        kind = "plane" if spec.is_plane else "volume"
        raise UserInputError(
            f"{spec.model_id} is a {kind} model and cannot be exported as {', '.join(refused)}; "
            f"its variants are {', '.join(allowed)} (plane packages need a model trained on "
            f"single planes: training/plane.yaml)"
        )
    return wanted


def package_id(spec: ModelSpec, variant: Variant) -> str:
    """The package id: the model id plus the variant's suffix."""
    return spec.model_id + ID_SUFFIX[variant]
