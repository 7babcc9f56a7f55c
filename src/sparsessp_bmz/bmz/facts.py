"""What a package says about its model, computed once and handed to the RDF, card and config.

Before, the RDF, the model card and `config.sparsessp` each filled the template, counted
parameters, read the torch version and derived voxel sizes on their own; now `package_facts`
computes every such fact here and the writers only format them. The publisher's metadata file
(`export --metadata`) is merged over the project's template (`rdf_templates/rdf_fields.yaml`)
here too, so that every writer sees the same names, authors and licence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sparsessp_bmz.bmz.metadata import (
    Citation,
    Maintainer,
    Person,
    PublisherMetadata,
    TrainingData,
    fill_template,
    placeholder_fields,
)
from sparsessp_bmz.bmz.variants import DISPLAY_SCALED, package_id
from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.metrics import HeldOutScores, ImageMetrics
from sparsessp_bmz.nets.variants import Variant
from sparsessp_bmz.spec import ModelSpec
from sparsessp_bmz.trained import TrainedModel, TrainingFacts

#: Used when a checkpoint does not record when training finished: a constant keeps re-exports
#: byte-identical (the day the SparseSSP preprint appeared).
DEFAULT_TIMESTAMP = datetime(2024, 7, 2, tzinfo=timezone.utc)
#: Shown after the name of non-standard variants, so that the variants of one model differ.
VARIANT_LABEL: dict[Variant, str] = {"standard": "", "dense": " dense-grid", "plane": " plane"}
#: Percentiles of the held-out prediction that a display-scaled output maps to 0 and 1.
DISPLAY_PERCENTILES = (0.1, 99.9)


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


@dataclass(frozen=True)
class DisplayScale:
    """A fixed linear map of the model's usual output range onto 0..1 (inside the network, see
    `nets.variants.DisplayMap`).

    ilastik shows every network output as a 0..1 probability layer (and QuPath's pixel
    classifiers expect probabilities), while SparseSSP predicts z-scored intensities of roughly
    -1..5. A *fixed* linear map keeps everything the model predicts (it is invertible: z =
    value * (high - low) + low, values outside 0..1 are kept, only displayed clipped) and, unlike
    a per-tile percentile stretch, gives the same contrast in every tile of a large image.
    `low`/`high` are percentiles of the held-out test prediction; `inside` is the fraction of
    those voxels that land in 0..1.
    """

    low: float
    high: float
    inside: float

    @classmethod
    def of(cls, prediction: np.ndarray) -> DisplayScale:
        low, high = (float(v) for v in np.percentile(prediction, DISPLAY_PERCENTILES))
        high = max(high, low + 1e-6)
        scale = cls(low=low, high=high, inside=0.0)
        scaled = scale.apply(prediction)
        inside = float(np.mean((scaled >= 0.0) & (scaled <= 1.0)))
        return cls(low=low, high=high, inside=inside)

    @property
    def gain(self) -> float:
        return 1.0 / (self.high - self.low)

    @property
    def offset(self) -> float:
        return -self.low / (self.high - self.low)

    @property
    def map(self) -> tuple[float, float]:
        """(gain, offset) for `nets.variants.wrap_variant`."""
        return self.gain, self.offset

    def apply(self, prediction: np.ndarray) -> np.ndarray:
        """The map on an array, as the network applies it (float32)."""
        return (prediction * np.float32(self.gain) + np.float32(self.offset)).astype(np.float32)


@dataclass(frozen=True)
class Publication:
    """The text metadata of a package: the project's template overlaid with the publisher's."""

    name: str
    description: str
    version: str
    license: str
    authors: tuple[Person, ...]
    maintainers: tuple[Maintainer, ...]
    cite: tuple[Citation, ...]
    tags: tuple[str, ...]
    git_repo: str | None = None
    training_data: TrainingData | None = None
    links: tuple[str, ...] = ()
    card_text: str = ""
    #: Fields still at a project placeholder, to be set before uploading to bioimage.io.
    placeholders: tuple[str, ...] = ()


def read_template(templates: Path) -> dict[str, Any]:
    """The project's RDF text fields (`rdf_fields.yaml`)."""
    return yaml.safe_load((templates / "rdf_fields.yaml").read_text(encoding="utf-8"))


def publication(
    template: dict[str, Any],
    spec: ModelSpec,
    variant: Variant,
    metadata: PublisherMetadata | None,
) -> Publication:
    """Merge the publisher's metadata over the template, filled for one package."""
    values = {
        "organelle": spec.organelle,
        "ratio": spec.ratio,
        "topology": spec.topology,
        "model_id": spec.model_id,
    }
    # the publisher's name and description filled for this model, and checked once filled
    meta = (metadata or PublisherMetadata()).filled(values)

    def fill(text: str) -> str:
        return " ".join(fill_template(text, values).split())

    name = (meta.name or fill(template["name"])) + VARIANT_LABEL[variant]
    description = fill(template["description"][variant])
    if meta.description:  # the publisher's words, then what this variant takes and gives
        note = fill(template["variant_note"].get(variant, ""))
        description = f"{meta.description} {note}".strip()
    tags = [fill(str(tag)).lower() for tag in template["tags"][variant]]
    tags += [tag for tag in meta.tags if tag not in tags]
    cite = [Citation(text=entry["text"], doi=entry["doi"]) for entry in template["cite"]]
    return Publication(
        name=name,
        description=description,
        version=meta.version or str(template["version"]),
        license=meta.license or template["license"],
        authors=tuple(meta.authors or [Person(**author) for author in template["authors"]]),
        maintainers=tuple(meta.maintainers or ()),
        cite=tuple(cite + list(meta.cite)),
        tags=tuple(tags),
        git_repo=meta.git_repo,
        training_data=meta.training_data,
        links=tuple(meta.links),
        card_text=meta.card_text or "",
        placeholders=tuple(placeholder_fields(metadata)),
    )


@dataclass(frozen=True)
class PackageFacts:
    """Every fact one package states, each computed once (see the module docstring)."""

    package_id: str
    variant: Variant
    spec: ModelSpec
    publication: Publication
    structures: tuple[str, ...]
    parameter_count: int
    torch_version: str
    #: (z, y, x) voxel sizes in micrometres of the input and output grids (no z for planes).
    input_voxel_um: tuple[float, ...]
    output_voxel_um: tuple[float, ...]
    #: (z, y, x) of the grid the network was trained on (planes too: their z step matters for
    #: nothing here, but a model loaded back from the package keeps it).
    target_grid_um: tuple[float, float, float]
    timestamp: datetime
    training: TrainingFacts
    #: The run's data settings (split protocol, flips), None for a model built in Python.
    data: DataSettings | None
    manifest_name: str | None
    #: The paper's held-out metrics (what the RDF states).
    test_metrics: ImageMetrics | None
    test_source: str
    display: DisplayScale | None = None
    tolerance: Tolerance = field(default_factory=Tolerance)
    files: PackageFiles = field(default_factory=PackageFiles)
    #: The same held-out scores with the foreground and object metrics and the baselines beside
    #: them (the model card's table), None when only the paper's metrics are known.
    held_out: HeldOutScores | None = None

    @property
    def spec_kwargs(self) -> dict[str, Any]:
        """The network's description as plain JSON types (the architecture's kwargs)."""
        return self.spec.model_dump(mode="json")

    @property
    def architecture_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the shipped architecture callable."""
        kwargs: dict[str, Any] = {**self.spec_kwargs, "variant": self.variant}
        if self.display is not None:
            kwargs["display"] = [self.display.gain, self.display.offset]
        return kwargs


def torch_version() -> str:
    """The torch release the weights are saved with (without a local build tag)."""
    import torch

    return torch.__version__.split("+")[0]


def package_facts(
    trained: TrainedModel,
    variant: Variant,
    *,
    template: dict[str, Any],
    metadata: PublisherMetadata | None,
    test_source: str,
    display: DisplayScale | None,
) -> PackageFacts:
    """The facts of one package of a single-structure (baked) model."""
    spec = trained.spec
    metrics = trained.test_metrics.get(spec.organelle)
    vz, vy, vx = trained.voxel_size_um
    if variant == "plane":
        input_voxel: tuple[float, ...] = (vy, vx)
        output_voxel: tuple[float, ...] = (vy, vx)
    else:
        input_voxel = (vz * (spec.ratio if variant == "standard" else 1), vy, vx)
        output_voxel = (vz, vy, vx)
    if (display is not None) != (variant in DISPLAY_SCALED):
        raise ValueError(f"variant {variant} {'needs' if display is None else 'has no'} scale")
    return PackageFacts(
        package_id=package_id(spec, variant),
        variant=variant,
        spec=spec,
        publication=publication(template, spec, variant, metadata),
        structures=trained.structures,
        parameter_count=sum(p.numel() for p in trained.net.parameters()),
        torch_version=torch_version(),
        input_voxel_um=input_voxel,
        output_voxel_um=output_voxel,
        target_grid_um=trained.voxel_size_um,
        timestamp=trained.facts.saved_at or DEFAULT_TIMESTAMP,
        training=trained.facts,
        data=trained.data,
        manifest_name=trained.manifest.name if trained.manifest is not None else None,
        test_metrics=metrics.network().whole if isinstance(metrics, HeldOutScores) else metrics,
        test_source=test_source,
        display=display,
        held_out=metrics if isinstance(metrics, HeldOutScores) else None,
    )
