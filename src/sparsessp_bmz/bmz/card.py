"""The model card (README.md of a package), rendered from `rdf_templates/model_card.md`.

The template uses `string.Template` placeholders ($name) so that the markdown can contain braces
and the card text stays editable by people who never read this code.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from sparsessp_bmz.bmz.axes import XY_HALO, z_scales
from sparsessp_bmz.trained import TrainedModel

METRIC_LABELS = {"mse": "MSE", "mae": "MAE", "r2": "R²", "pearson": "Pearson r"}


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def metrics_text(metrics: Mapping[str, float]) -> str:
    """A markdown table of the checkpoint's held-out metrics, or an honest 'not evaluated'."""
    if not metrics:
        return (
            "This checkpoint records no held-out metrics. Run `sparsessp-bmz evaluate` on the "
            "test split before relying on it."
        )
    lines = ["| metric | value |", "|---|---|"]
    for key in sorted(metrics):
        lines.append(f"| {METRIC_LABELS.get(key, key)} | {_fmt(metrics[key])} |")
    return "\n".join(lines)


def training_text(trained: TrainedModel, test_source: str) -> str:
    """What the network was trained on and where the test tensors come from."""
    parts = []
    structures = ", ".join(trained.structures) or trained.spec.organelle
    if trained.manifest is not None:
        parts.append(
            f"Manifest `{trained.manifest.name}` (structures: {structures}), split per structure "
            "75/25 train/test (seed 42), then 90/10 train/validation (RepMode's protocol); "
            "every volume z-scored; random crops of the training patch with z/y/x flips; the "
            "sparse input is the TL stack subsampled on the global grid (phase 0)."
        )
    else:
        parts.append(f"Structures: {structures}. The checkpoint records no training manifest.")
    if trained.training:
        details = ", ".join(f"{k}: {v}" for k, v in sorted(trained.training.items()))
        parts.append(f"Training settings: {details}.")
    parts.append(f"Test tensors: {test_source}, held out from training.")
    return "\n\n".join(parts)


def render_card(
    template: str,
    trained: TrainedModel,
    *,
    name: str,
    description: str,
    citations: list[dict[str, Any]],
    tolerance: Any,
    test_source: str,
) -> str:
    """Fill the card template; an unknown placeholder is a template bug and raises KeyError."""
    spec = trained.spec
    z_in, z_out = z_scales(spec.ratio)
    vz, vy, vx = trained.voxel_size_um
    depth = (
        f"z: exactly {spec.input_patch[0]} slices (this topology folds depth into channels)."
        if spec.fixed_depth
        else f"z: any positive multiple of {spec.input_depth_step} slices."
    )
    limitations = (
        "Trained on "
        + (
            "synthetic cells from the sparsessp-bmz simulator"
            if trained.manifest is None
            else "the data above"
        )
        + "; expect degraded predictions on other microscopes, magnifications, z steps or cell "
        "types. The input must be acquired with exactly r times the target z step and resampled "
        f"to {vy:g} um in y/x. Predictions can look plausible where they are wrong: verify "
        "against real fluorescence before drawing biological conclusions."
    )
    values = {
        "name": name,
        "description": description,
        "model_id": spec.model_id,
        "organelle": spec.organelle,
        "ratio": spec.ratio,
        "topology": spec.topology,
        "interpolation": spec.interpolation,
        "projection": spec.projection,
        "embedding": spec.embedding,
        "width": spec.width,
        "units": spec.units,
        "patch": " x ".join(map(str, spec.patch)),
        "parameters": f"{sum(p.numel() for p in trained.net.parameters()):,}",
        "input_depth": depth,
        "halo": XY_HALO,
        "input_voxel": f"{vz * spec.ratio:g} x {vy:g} x {vx:g}",
        "output_voxel": f"{vz:g} x {vy:g} x {vx:g}",
        "z_in_scale": f"{z_in:g}",
        "z_out_scale": f"{z_out:g}",
        "training_data": training_text(trained, test_source),
        "metrics": metrics_text(trained.metrics),
        "limitations": limitations,
        "rtol": f"{tolerance.relative:g}",
        "atol": f"{tolerance.absolute:g}",
        "mismatched": tolerance.mismatched_per_million,
        "citations": "\n".join(
            f"* {' '.join(c['text'].split())} doi:{c['doi']}" for c in citations
        ),
    }
    return string.Template(template).substitute(values)
