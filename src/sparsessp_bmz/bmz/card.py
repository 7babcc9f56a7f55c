"""The model card (README.md of a package), rendered from `rdf_templates/model_card.md`.

The template uses `string.Template` placeholders ($name) so that the markdown can contain braces
and the card text stays editable by people who never read this code. Every value comes from the
package's `PackageFacts`, and the table of software that runs the package is generated from the
consumer checks run on the package's own RDF, so the card cannot disagree with the package.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sparsessp_bmz.bmz.axes import XY_HALO, XY_MIN, z_scales
from sparsessp_bmz.bmz.facts import PackageFacts
from sparsessp_bmz.metrics import (
    METRIC_LABELS,
    METRIC_NAMES,
    OBJECT_NAMES,
    PREDICTORS,
    SCOPES,
    VOCABULARY,
    HeldOutScores,
    column,
)

if TYPE_CHECKING:
    from sparsessp_bmz.bmz.consumers import ConsumerVerdict


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _voxel(sizes: Sequence[float]) -> str:
    return " x ".join(f"{v:g}" for v in sizes)


def metrics_text(facts: PackageFacts) -> str:
    """A markdown table of the held-out test metrics, or an honest 'not evaluated'."""
    metrics = facts.test_metrics
    if metrics is None:
        return (
            "This package records no held-out test metrics (its model was exported without a "
            "training manifest to evaluate on). Run `sparsessp-bmz evaluate` on a test split "
            "before relying on it."
        )
    intro = (
        f"Whole held-out test volumes of `{facts.manifest_name}` ({facts.spec.organelle}), "
        "predicted with the Gaussian sliding window on the sparse grid, both sides z-scored"
    )
    if facts.held_out is not None and facts.held_out.baselines:
        return _held_out_text(intro, facts.held_out)
    values = metrics.as_dict()
    lines = [f"{intro}:", "", "| metric | value |", "|---|---|"]
    lines += [f"| {METRIC_LABELS[name]} | {_fmt(values[name])} |" for name in METRIC_NAMES]
    return "\n".join(lines)


def _held_out_text(intro: str, scores: HeldOutScores) -> str:
    """The network beside its baselines: whole volume, foreground and (blobs) objects."""
    keys = ["", *scores.baselines]
    sets = {"": scores.network(), **scores.baselines}
    values = {key: found.columns() for key, found in sets.items()}
    rows = [(m, "") for m in METRIC_NAMES] + [(m, "fg") for m in METRIC_NAMES]
    if scores.objects is not None:
        rows += [(m, "") for m in OBJECT_NAMES]
    if scores.true_objects is not None:
        rows += [(m, "true") for m in OBJECT_NAMES]
    lines = [
        f"{intro}. Beside the network, two baselines fitted on the same training split and "
        "scored on the same volumes:",
        "",
        *(f"- **{PREDICTORS[k][0]}**: {PREDICTORS[k][1]}." for k in keys[1:]),
        "",
        "| metric | " + " | ".join(PREDICTORS[k][0] for k in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for metric, scope in rows:
        cells = [_fmt(values[k][column(metric, scope)[0]]) for k in keys]
        label = VOCABULARY[metric].label + (f" ({SCOPES[scope][0]})" if scope else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"fg: {SCOPES['fg'][1]}. "
        + " ".join(f"{VOCABULARY[n].label}: {VOCABULARY[n].description}." for n in ("r2",)),
    ]
    if scores.objects is not None:
        lines[-1] += " " + " ".join(
            f"{VOCABULARY[n].label}: {VOCABULARY[n].description}." for n in ("f1_50", "ap_50")
        )
    if scores.ceiling is not None:
        lines[-1] += (
            f" true: {SCOPES['true'][1]}; the target's own segmentation scores "
            f"F1@0.5 {_fmt(scores.ceiling.f1_50)}, AP@0.5 {_fmt(scores.ceiling.ap_50)} there "
            "(the ceiling)."
        )
    ridge = scores.baselines.get("ridge")
    if ridge is not None and not scores.r2 > ridge.whole.r2:
        lines += [
            "",
            f"**Warning:** on these test volumes the network (R² {_fmt(scores.r2)}) does not beat "
            f"a ridge regression on local TL features (R² {_fmt(ridge.whole.r2)}).",
        ]
    return "\n".join(lines)


def training_text(facts: PackageFacts) -> str:
    """What the network was trained on and where the test tensors come from."""
    parts = []
    structures = ", ".join(facts.structures)
    data = facts.data
    if facts.manifest_name is not None and data is not None:
        test = round(100 * data.test_fraction)
        val = round(100 * data.val_fraction)
        flips = "with z/y/x flips" if data.flips else "without flips"
        parts.append(
            f"Manifest `{facts.manifest_name}` (structures: {structures}), split per structure "
            f"{100 - test}/{test} train/test (seed {data.split_seed}), then {100 - val}/{val} "
            "train/validation (RepMode's protocol); every volume z-scored; random crops of the "
            f"training patch {flips}; the sparse input is the TL stack subsampled on the global "
            "grid (phase 0)."
        )
    else:
        parts.append(f"Structures: {structures}. The checkpoint records no training manifest.")
    data = facts.publication.training_data
    if data is not None:
        link = {
            "bioimageio_id": f"bioimage.io dataset `{data.ref}`",
            "doi": f"https://doi.org/{data.ref}",
            "url": data.ref,
        }[data.kind]
        parts.append(f"Training data: {link}.")
    parts.append(f"Training: {facts.training.settings_text()}.")
    parts.append(f"Test tensors: {facts.test_source}, held out from training.")
    return "\n\n".join(parts)


def _people(facts: PackageFacts) -> str:
    pub = facts.publication

    def line(person) -> str:  # type: ignore[no-untyped-def]
        extra = [person.affiliation, person.orcid and f"ORCID {person.orcid}"]
        extra.append(person.github_user and f"@{person.github_user}")
        details = ", ".join(item for item in extra if item)
        return f"* {person.name}" + (f" ({details})" if details else "")

    lines = ["Authors:", *(line(p) for p in pub.authors)]
    if pub.maintainers:
        lines += ["", "Maintainers:", *(line(p) for p in pub.maintainers)]
    if pub.git_repo:
        lines += ["", f"Source: {pub.git_repo}"]
    return "\n".join(lines)


def input_output_text(facts: PackageFacts) -> str:
    """The tensors, in the words of the package's variant."""
    spec, variant = facts.spec, facts.variant
    r = spec.ratio
    xy = f"y and x: multiples of 16, at least {XY_MIN}."
    display = facts.display
    scaled = (
        ""
        if display is None
        else (
            f" The output is the z-scored prediction mapped linearly so that "
            f"[{display.low:.3g}, {display.high:.3g}] (the 0.1 and 99.9 percentiles of the "
            f"held-out test prediction; {100 * display.inside:.1f} % of its voxels) becomes "
            f"[0, 1], for displays that expect probabilities; nothing is clipped, and "
            f"z-score = value x {display.high - display.low:.4g} + {display.low:.4g} recovers "
            f"the model's own output."
        )
    )
    if variant == "plane":
        return (
            "* Input `raw`: (batch, channel, y, x), one transmitted-light plane, z-scored by the "
            f"package (`zero_mean_unit_variance` over channel, y, x). {xy}\n"
            "* Output `prediction`: (batch, channel, y, x), the input's size; a tiling consumer "
            f"crops {XY_HALO} pixels from each tile side.{scaled}\n"
            f"* Pixel size: {_voxel(facts.input_voxel_um)} um (y, x) on input and output."
        )
    if variant == "dense":
        depth = (
            f"z: exactly {spec.patch[0]} slices; a tiling consumer cuts deeper stacks into "
            f"blocks of {spec.patch[0]}, so give a depth that is a multiple of "
            f"{spec.patch[0]} (else the last block starts off the sparse grid)."
            if spec.fixed_depth
            else f"z: any positive multiple of {spec.input_depth_step * r} slices."
        )
        return (
            "* Input `raw`: (batch, channel, z, y, x), one transmitted-light channel on the "
            f"*target* z grid. The network uses slices z = 0, {r}, {2 * r}, ... only, so give "
            f"either a dense TL stack or a sparse stack with each slice repeated {r} times. "
            f"Z-scored by the package over channel, z, y, x. {depth} {xy}\n"
            "* Output `prediction`: (batch, channel, z, y, x), exactly the input's shape. A "
            f"tiling consumer crops {XY_HALO} voxels in y and x from each tile side.{scaled}\n"
            f"* Voxel sizes: {_voxel(facts.input_voxel_um)} um (z, y, x) on input and output."
        )
    z_in, z_out = z_scales(spec, variant)
    depth = (
        f"z: exactly {spec.input_patch[0]} slices (this topology folds depth into channels)."
        if spec.fixed_depth
        else f"z: any positive multiple of {spec.input_depth_step} slices."
    )
    return (
        "* Input `raw`: (batch, channel, z, y, x), one sparse transmitted-light channel (one "
        f"slice every {r} target slices), z-scored by the package (`zero_mean_unit_variance` "
        f"over channel, z, y, x). {depth} {xy}\n"
        f"* Output `prediction`: (batch, channel, z, y, x) with {r} times the input depth and "
        f"the input's y/x size. A tiling consumer crops {XY_HALO} voxels in y and x from each "
        "tile side.\n"
        f"* Voxel sizes: input {_voxel(facts.input_voxel_um)} um (z, y, x), output "
        f"{_voxel(facts.output_voxel_um)} um. The RDF's z `scale` values ({z_in:g} for the "
        f"input, {z_out:g} for the output) are not voxel sizes: they are chosen so that "
        f"bioimageio.core and deepImageJ both compute an output depth of {r} x the input depth."
    )


def _how_to(facts: PackageFacts, consumer: str) -> str:
    """The steps to run this package in one consumer."""
    zip_name = f"{facts.package_id}.zip"
    if consumer == "deepImageJ":
        return (
            f"Fiji: Plugins > deepImageJ > DeepImageJ Install Model, choose `{zip_name}`; open "
            "the image, Plugins > deepImageJ > DeepImageJ Run, pick the model (it tiles the "
            "image itself; keep each input tile under ~50 M voxels)."
        )
    if consumer == "ilastik":
        return (
            "ilastik: Neural Network Classification (Local) workflow; add the TL stack as raw "
            f"data, then Load model and choose `{zip_name}`; the prediction is shown as a 0..1 "
            "layer and can be exported."
        )
    if consumer == "QuPath":
        return (
            f"QuPath 0.6+: unzip `{zip_name}`; Extensions > Bioimage Model Zoo > Create pixel "
            "classifier (Bioimage Model Zoo), choose the unzipped folder's rdf.yaml, then apply "
            "it to the image (QuPath z-scores each tile on its own)."
        )
    # measured with bioimageio.core 0.11 (tests/test_bmz_core_predict.py): the CLI reads
    # `--blockwise 1` as True (block parameter 10, 192-voxel blocks, too big for most fields);
    # 2 gives 64-voxel y/x blocks. Bare arrays need y and x of 32 + 16k; a Tensor with named
    # dims does not.
    zyx = "z, y, x" if facts.variant != "plane" else "y, x"
    dims = (
        '("batch", "channel", "z", "y", "x")'
        if facts.variant != "plane"
        else ('("batch", "channel", "y", "x")')
    )
    return (
        f"`bioimageio predict {zip_name} --inputs stack.tif --blockwise 2` (the stack's y and x "
        f"must be 32 + 16k; the block must fit inside the image); in Python "
        f"`bioimageio.core.predict(model='{zip_name}', inputs=Tensor(array, dims={dims}), "
        f"blocksize_parameter=1)` takes any ({zyx}) size the network accepts."
    )


def consumers_text(facts: PackageFacts, verdicts: Sequence[ConsumerVerdict]) -> str:
    """The table of software that runs this package, from the checks that ran on it."""
    lines = ["| software | runs this package | how |", "|---|---|---|"]
    formats = "TorchScript, ONNX and the state dict with its shipped network source"
    lines.append(
        f"| bioimageio.core (Python) | yes: `test_model` passed for {formats} at export "
        f"(packages that fail are never placed) | {_how_to(facts, 'bioimageio.core')} |"
    )
    lines.append(
        "| napari | yes, through bioimageio.core (napari's bioimage.io plugins use it) | as "
        "for bioimageio.core |"
    )
    for verdict in verdicts:
        if verdict.accepted:
            notes = [c.message for c in verdict.checks if not c.passed]
            answer = f"yes ({len(verdict.checks)} checks)" + (
                "; note: " + "; ".join(notes) if notes else ""
            )
            how = _how_to(facts, verdict.name)
        else:
            reasons = [c.message for c in verdict.checks if c.blocking]
            answer = "**no**: " + "; ".join(reasons)
            how = _alternative(facts, verdict.name)
        lines.append(f"| {verdict.name} | {answer.replace('|', '/')} | {how} |")
    return "\n".join(lines)


def _alternative(facts: PackageFacts, consumer: str) -> str:
    if consumer == "ilastik" and facts.variant == "standard":
        return f"export the dense-grid variant (`--variants dense`): `{facts.package_id}-dense`"
    if consumer == "QuPath":
        return "train a plane model (training/plane.yaml) and export it (`--variants plane`)"
    return "-"


def render_card(template: str, facts: PackageFacts, verdicts: Sequence[ConsumerVerdict]) -> str:
    """Fill the card template; an unknown placeholder is a template bug and raises KeyError."""
    spec = facts.spec
    pub = facts.publication
    limitations = (
        "Trained on "
        + (
            "synthetic cells from the sparsessp-bmz simulator"
            if facts.manifest_name is None
            else "the data above"
        )
        + "; expect degraded predictions on other microscopes, magnifications, z steps or cell "
        "types. The input must be acquired with exactly r times the target z step and resampled "
        f"to {facts.output_voxel_um[-1]:g} um in y/x. Predictions can look plausible where they "
        "are wrong: verify against real fluorescence before drawing biological conclusions."
    )
    tol = facts.tolerance
    values = {
        "name": pub.name,
        "description": pub.description,
        "package_id": facts.package_id,
        "variant": facts.variant,
        "organelle": spec.organelle,
        "ratio": spec.ratio,
        "topology": spec.topology,
        "interpolation": spec.interpolation,
        "projection": spec.projection,
        "embedding": spec.embedding,
        "width": spec.width,
        "units": spec.units,
        "patch": " x ".join(map(str, spec.patch)),
        "parameters": f"{facts.parameter_count:,}",
        "input_output": input_output_text(facts),
        "training_data": training_text(facts),
        "metrics": metrics_text(facts),
        "consumers": consumers_text(facts, verdicts),
        "limitations": limitations,
        "people": _people(facts),
        "publisher_text": pub.card_text.strip(),
        "rtol": f"{tol.relative:g}",
        "atol": f"{tol.absolute:g}",
        "mismatched": tol.mismatched_per_million,
        "citations": "\n".join(
            f"* {c.text} " + (f"doi:{c.doi}" if c.doi else str(c.url)) for c in pub.cite
        ),
    }
    return string.Template(template).substitute(values)
