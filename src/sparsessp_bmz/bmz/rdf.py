"""The model description (rdf.yaml) of a package, built with bioimageio.spec and written in the
dialect both bioimageio.core and deepImageJ read.

bioimageio.spec 0.5.11+ serialises `documentation` and `covers` as mappings (source + sha256),
which deepImageJ's own RDF reader rejects; it also stamps the current time. We therefore let
bioimageio.spec build and check the description, then write `format_version: 0.5.10` with plain
string `documentation` and `covers` (bioimageio.core upgrades 0.5.10 on load) and a timestamp
taken from the checkpoint, so the same checkpoint always gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from bioimageio.spec import ValidationContext
from bioimageio.spec.model import v0_5

from sparsessp_bmz.bmz import axes
from sparsessp_bmz.bmz.weights import ONNX_FILE, ONNX_OPSET, STATE_DICT_FILE, TORCHSCRIPT_FILE
from sparsessp_bmz.spec import ModelSpec
from sparsessp_bmz.trained import TrainedModel

RDF_FILE = "rdf.yaml"
#: The RDF dialect deepImageJ reads; bioimageio.core upgrades it on load.
WRITTEN_FORMAT_VERSION = "0.5.10"
ARCHITECTURE_CALLABLE = "build_net_from_fields"
ARCHITECTURE_MODULE = "sparsessp_bmz.nets"
#: Used when a checkpoint does not record when training finished: a constant keeps re-exports
#: byte-identical (the day the SparseSSP preprint appeared).
DEFAULT_TIMESTAMP = datetime(2024, 7, 2, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Tolerance:
    """`config.bioimageio.reproducibility_tolerance` of every package.

    Outputs are z-scored intensities of order 1. Eager PyTorch, TorchScript and ONNX Runtime on a
    CPU agree to about 1e-6; other CPUs and GPUs (TF32 convolutions) differ by up to ~1e-3
    relative. 1e-3 relative plus 1e-4 absolute is far below what anyone can see (0.01 % of a
    standard deviation near zero) yet tolerates those back ends; a few outliers per million are
    allowed for accumulation-order flips at near-zero values.
    """

    relative: float = 1e-3
    absolute: float = 1e-4
    mismatched_per_million: int = 10


@dataclass(frozen=True)
class PackageFiles:
    """Names (relative to the package root) of the files the RDF points at."""

    documentation: str = "README.md"
    cover: str = "cover.png"
    environment: str = "environment.yaml"
    test_input: str = "test_input.npy"
    test_output: str = "test_output.npy"
    sample_input: str = "sample_input.tif"
    sample_output: str = "sample_output.tif"


def spec_fields(spec: ModelSpec) -> dict[str, Any]:
    """The spec as plain JSON types: the kwargs of `build_net_from_fields`."""
    return spec.model_dump(mode="json")


def fill(template: Any, values: dict[str, Any]) -> Any:
    """Fill {placeholders} in every string of a nested template."""
    if isinstance(template, str):
        return template.format(**values)
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: fill(item, values) for key, item in template.items()}
    return template


def timestamp_of(trained: TrainedModel) -> datetime:
    """When the checkpoint was saved (so re-exports stay byte-identical); the fixed default for
    checkpoints that do not record it."""
    value = trained.training.get("saved_at")
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return DEFAULT_TIMESTAMP


def _tensors(
    spec: ModelSpec, files: PackageFiles
) -> tuple[v0_5.InputTensorDescr, v0_5.OutputTensorDescr]:
    preprocessing = [
        v0_5.ZeroMeanUnitVarianceDescr(
            kwargs=v0_5.ZeroMeanUnitVarianceKwargs(
                axes=[v0_5.AxisId(a) for a in ("channel", "z", "y", "x")]
            )
        )
    ]
    raw = v0_5.InputTensorDescr(
        id=v0_5.TensorId(axes.INPUT_ID),
        description="Sparse transmitted-light z-stack (one slice every r target slices).",
        axes=axes.input_axes(spec),
        test_tensor=v0_5.FileDescr(source=Path(files.test_input)),
        sample_tensor=v0_5.FileDescr(source=Path(files.sample_input)),
        preprocessing=preprocessing,
    )
    prediction = v0_5.OutputTensorDescr(
        id=v0_5.TensorId(axes.OUTPUT_ID),
        description=f"Predicted z-scored {spec.organelle} fluorescence on the dense z grid.",
        axes=axes.output_axes(spec),
        test_tensor=v0_5.FileDescr(source=Path(files.test_output)),
        sample_tensor=v0_5.FileDescr(source=Path(files.sample_output)),
    )
    return raw, prediction


def _weights(spec: ModelSpec, files: PackageFiles) -> v0_5.WeightsDescr:
    import torch

    torch_version = v0_5.Version(torch.__version__.split("+")[0])
    return v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=Path(STATE_DICT_FILE),
            architecture=v0_5.ArchitectureFromLibraryDescr(
                callable=v0_5.Identifier(ARCHITECTURE_CALLABLE),
                import_from=ARCHITECTURE_MODULE,
                kwargs=spec_fields(spec),
            ),
            pytorch_version=torch_version,
            dependencies=v0_5.FileDescr(source=Path(files.environment)),
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


def build_description(
    trained: TrainedModel,
    folder: Path,
    template: dict[str, Any],
    *,
    sparsessp_config: dict[str, Any],
    training_details: dict[str, Any],
    files: PackageFiles = PackageFiles(),
    tolerance: Tolerance = Tolerance(),
) -> v0_5.ModelDescr:
    """A checked ModelDescr for the files already written into `folder`."""
    spec = trained.spec
    values = {
        "organelle": spec.organelle,
        "ratio": spec.ratio,
        "topology": spec.topology,
        "model_id": spec.model_id,
    }
    fields = fill(template, values)
    with ValidationContext(root=folder, perform_io_checks=True, log_warnings=False):
        raw, prediction = _tensors(spec, files)
        return v0_5.ModelDescr(
            id=v0_5.ModelId(spec.model_id),
            name=fields["name"],
            description=" ".join(fields["description"].split()),
            version=str(fields["version"]),
            license=fields["license"],
            authors=[v0_5.Author(**author) for author in fields["authors"]],
            cite=[v0_5.CiteEntry(**entry) for entry in fields["cite"]],
            tags=[str(tag).lower() for tag in fields["tags"]],
            documentation=v0_5.FileDescr(source=Path(files.documentation)),
            covers=[v0_5.FileDescr(source=Path(files.cover))],
            timestamp=v0_5.Datetime(timestamp_of(trained)),
            inputs=[raw],
            outputs=[prediction],
            weights=_weights(spec, files),
            config=v0_5.Config(
                bioimageio=v0_5.BioimageioConfig(
                    reproducibility_tolerance=[
                        v0_5.ReproducibilityTolerance(
                            relative_tolerance=tolerance.relative,
                            absolute_tolerance=tolerance.absolute,
                            mismatched_elements_per_million=tolerance.mismatched_per_million,
                        )
                    ],
                    nickname=spec.model_id,
                    architecture_type="SparseSSP UNet",
                    modality="transmitted light (bright field) microscopy",
                    target_structure=[spec.organelle],
                    task="in-silico labeling",
                    model_parameter_count=sum(p.numel() for p in trained.net.parameters()),
                    training=v0_5.TrainingDetails(**training_details),
                ),
                deepimagej={"allow_tiling": True, "pyramidal_model": False},
                sparsessp=sparsessp_config,
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


def write_rdf(descr: v0_5.ModelDescr, folder: Path) -> Path:
    """rdf.yaml in the deepImageJ-readable dialect, keys in spec order, no volatile values."""
    from bioimageio.spec import dump_description

    content = deepimagej_dialect(dump_description(descr))
    path = folder / RDF_FILE
    text = yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=100)
    path.write_text(text, encoding="utf-8")
    return path
