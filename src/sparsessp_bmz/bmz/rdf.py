"""The model description (rdf.yaml) of a package, built with bioimageio.spec and written in the
dialect both bioimageio.core and deepImageJ read.

bioimageio.spec 0.5.11+ serialises `documentation` and `covers` as mappings (source + sha256),
which deepImageJ's own RDF reader rejects; it also stamps the current time. We therefore let
bioimageio.spec build and check the description, then write `format_version: 0.5.10` with plain
string `documentation` and `covers` (bioimageio.core upgrades 0.5.10 on load) and a timestamp
taken from the checkpoint, so the same checkpoint always gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from bioimageio.spec import ValidationContext
from bioimageio.spec.model import v0_5

from sparsessp_bmz.bmz import axes
from sparsessp_bmz.bmz.facts import PackageFacts
from sparsessp_bmz.bmz.netsource import ARCHITECTURE_CALLABLE, SHIPPED_FILE
from sparsessp_bmz.bmz.offline import accounts_unchecked
from sparsessp_bmz.bmz.weights import ONNX_FILE, ONNX_OPSET, STATE_DICT_FILE, TORCHSCRIPT_FILE

RDF_FILE = "rdf.yaml"
#: The RDF dialect deepImageJ reads; bioimageio.core upgrades it on load.
WRITTEN_FORMAT_VERSION = "0.5.10"
TRAINING_PREPROCESSING = "z-score per volume; random crops on the sparse global grid (phase 0)"


def _input_description(facts: PackageFacts) -> str:
    if facts.variant == "plane":
        return "Transmitted-light plane."
    if facts.variant == "dense":
        return "Transmitted-light z-stack on the target z grid (uses slices 0, r, 2r, ...)."
    return "Sparse transmitted-light z-stack (one slice every r target slices)."


def _tensors(facts: PackageFacts) -> tuple[v0_5.InputTensorDescr, v0_5.OutputTensorDescr]:
    spec, variant, files = facts.spec, facts.variant, facts.files
    spatial = ("z", "y", "x") if variant != "plane" else ("y", "x")
    preprocessing = [
        v0_5.ZeroMeanUnitVarianceDescr(
            kwargs=v0_5.ZeroMeanUnitVarianceKwargs(
                axes=[v0_5.AxisId(a) for a in ("channel", *spatial)]
            )
        )
    ]
    what = f"z-scored {spec.organelle} fluorescence"
    if facts.display is not None:
        what = f"{spec.organelle} fluorescence mapped onto 0..1 (data.scale/offset: z-score)"
    raw = v0_5.InputTensorDescr(
        id=v0_5.TensorId(axes.INPUT_ID),
        description=_input_description(facts),
        axes=axes.input_axes(spec, variant),
        test_tensor=v0_5.FileDescr(source=Path(files.test_input)),
        sample_tensor=v0_5.FileDescr(source=Path(files.sample_input)),
        preprocessing=preprocessing,
    )
    grid = "" if variant == "plane" else " on the dense z grid"
    prediction = v0_5.OutputTensorDescr(
        id=v0_5.TensorId(axes.OUTPUT_ID),
        description=f"Predicted {what}{grid}.",
        axes=axes.output_axes(spec, variant),
        test_tensor=v0_5.FileDescr(source=Path(files.test_output)),
        sample_tensor=v0_5.FileDescr(source=Path(files.sample_output)),
        **_display_data(facts),
    )
    return raw, prediction


def _display_data(facts: PackageFacts) -> dict[str, Any]:
    """A display-scaled output states how its values convert back to z-scores (the spec's
    `data.scale`/`data.offset`: physical = value * scale + offset)."""
    if facts.display is None:
        return {}
    span = facts.display.high - facts.display.low
    return {
        "data": v0_5.IntervalOrRatioDataDescr(
            type="float32", scale=span, offset=facts.display.low, unit="arbitrary unit"
        )
    }


def _weights(facts: PackageFacts) -> v0_5.WeightsDescr:
    torch_version = v0_5.Version(facts.torch_version)
    return v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=Path(STATE_DICT_FILE),
            architecture=v0_5.ArchitectureFromFileDescr(
                source=Path(SHIPPED_FILE),
                callable=v0_5.Identifier(ARCHITECTURE_CALLABLE),
                kwargs=facts.architecture_kwargs,
            ),
            pytorch_version=torch_version,
            dependencies=v0_5.FileDescr(source=Path(facts.files.environment)),
        ),
        torchscript=v0_5.TorchscriptWeightsDescr(
            source=Path(TORCHSCRIPT_FILE),
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
        ),
        onnx=v0_5.OnnxWeightsDescr(
            source=Path(ONNX_FILE), opset_version=ONNX_OPSET, parent="pytorch_state_dict"
        ),
    )


def _training_details(facts: PackageFacts) -> v0_5.TrainingDetails:
    t = facts.training
    details: dict[str, Any] = {
        "training_preprocessing": TRAINING_PREPROCESSING
        + ("" if facts.data is not None and not facts.data.flips else "; z/y/x flips"),
        "loss_function": t.loss,
        "training_epochs": float(t.epochs_done),
    }
    if t.batch_size is not None:
        details["training_batch_size"] = float(t.batch_size)
    if t.lr is not None:
        details["initial_learning_rate"] = t.lr
        details["optimizer"] = "Adam"
    return v0_5.TrainingDetails(**details)


def _people(facts: PackageFacts) -> tuple[list[v0_5.Author], list[v0_5.Maintainer]]:
    def fields(person: Any) -> dict[str, Any]:
        return {k: v for k, v in person.model_dump().items() if v is not None}

    pub = facts.publication
    authors = [v0_5.Author(**fields(person)) for person in pub.authors]
    return authors, [v0_5.Maintainer(**fields(person)) for person in pub.maintainers]


def _cite(facts: PackageFacts) -> list[v0_5.CiteEntry]:
    entries = [  # only the fields that are set: no `url: null` in the RDF
        v0_5.CiteEntry(**{k: v for k, v in c.model_dump().items() if v is not None})
        for c in facts.publication.cite
    ]
    data = facts.publication.training_data
    if data is not None and data.kind == "doi":
        entries.append(v0_5.CiteEntry(text="Training data", doi=data.ref))
    return entries


def sparsessp_config(facts: PackageFacts) -> dict[str, Any]:
    """`config.sparsessp`: what this project (and its index) reads back from a package."""
    from sparsessp_bmz import __version__

    metrics = facts.test_metrics
    t = facts.training
    display = facts.display
    return {
        "spec": facts.spec_kwargs,
        "model_id": facts.spec.model_id,
        "package_id": facts.package_id,
        "variant": facts.variant,
        "voxel_size_um": {
            "input": list(facts.input_voxel_um),
            "output": list(facts.output_voxel_um),
        },
        "target_grid_um": list(facts.target_grid_um),
        "structures": list(facts.structures),
        "manifest": facts.manifest_name,
        "test_metrics": None if metrics is None else metrics.as_dict(),
        "training": {
            "run": t.run,
            "global_step": t.global_step,
            "epoch": t.epoch,
            "lr": t.lr,
            "batch_size": t.batch_size,
            "precision": t.precision,
            "seed": t.seed,
            "best_val_mse": t.best_val_mse,
        },
        "display_scale": None
        if display is None
        else {"low": display.low, "high": display.high, "inside_0_1": display.inside},
        "training_data": None
        if facts.publication.training_data is None
        else facts.publication.training_data.model_dump(),
        "test_tensors": facts.test_source,
        "sparsessp_bmz_version": __version__,
    }


def build_description(facts: PackageFacts, folder: Path) -> v0_5.ModelDescr:
    """A checked ModelDescr for the files already written into `folder`."""
    pub = facts.publication
    data = pub.training_data
    users = [p.github_user for p in (*pub.authors, *pub.maintainers) if p.github_user]
    with (
        accounts_unchecked(users),
        ValidationContext(root=folder, perform_io_checks=True, log_warnings=False),
    ):
        raw, prediction = _tensors(facts)
        authors, maintainers = _people(facts)
        # only fields that are set, so that the RDF carries no nulls or empty lists for readers
        # that take a key's presence as a value (deepImageJ's own parser)
        optional: dict[str, Any] = {
            "maintainers": maintainers,
            "links": list(pub.links),
            "git_repo": pub.git_repo,
            "training_data": v0_5.LinkedDataset(id=data.ref)
            if data is not None and data.kind == "bioimageio_id"
            else None,
        }
        return v0_5.ModelDescr(
            **{key: value for key, value in optional.items() if value},
            id=v0_5.ModelId(facts.package_id),
            name=pub.name,
            description=pub.description,
            version=pub.version,
            license=pub.license,
            authors=authors,
            cite=_cite(facts),
            tags=list(pub.tags),
            documentation=v0_5.FileDescr(source=Path(facts.files.documentation)),
            covers=[v0_5.FileDescr(source=Path(facts.files.cover))],
            timestamp=v0_5.Datetime(facts.timestamp),
            inputs=[raw],
            outputs=[prediction],
            weights=_weights(facts),
            config=v0_5.Config(
                bioimageio=v0_5.BioimageioConfig(
                    reproducibility_tolerance=[
                        v0_5.ReproducibilityTolerance(
                            relative_tolerance=facts.tolerance.relative,
                            absolute_tolerance=facts.tolerance.absolute,
                            mismatched_elements_per_million=facts.tolerance.mismatched_per_million,
                        )
                    ],
                    nickname=facts.package_id,
                    architecture_type="SparseSSP UNet",
                    modality="transmitted light (bright field) microscopy",
                    target_structure=[facts.spec.organelle],
                    task="in-silico labeling",
                    model_parameter_count=facts.parameter_count,
                    training=_training_details(facts),
                ),
                deepimagej={"allow_tiling": True, "pyramidal_model": False},
                sparsessp=sparsessp_config(facts),
            ),
        )


def _plain(value: Any) -> Any:
    """A FileDescr dumped as a mapping -> its source string."""
    if isinstance(value, dict) and "source" in value:
        return value["source"]
    return value


def deepimagej_dialect(content: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a dumped description into the format deepImageJ parses (see module docstring)."""
    content = dict(content)
    content["format_version"] = WRITTEN_FORMAT_VERSION
    if "documentation" in content:
        content["documentation"] = _plain(content["documentation"])
    if "covers" in content:
        content["covers"] = [_plain(cover) for cover in content["covers"]]
    return content


def dump_rdf(descr: v0_5.ModelDescr) -> dict[str, Any]:
    """The description as it will be written: the deepImageJ-readable dialect."""
    from bioimageio.spec import dump_description

    return deepimagej_dialect(dump_description(descr))


def write_rdf(content: dict[str, Any], folder: Path) -> Path:
    """rdf.yaml from `dump_rdf`'s content, keys in spec order, no volatile values."""
    path = folder / RDF_FILE
    text = yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=100)
    path.write_text(text, encoding="utf-8")
    return path
