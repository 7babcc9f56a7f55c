"""Export: one package (model x variant) -> a validated package folder and zip under `packages/`.

Everything is built in a hidden temporary folder next to the destination, zipped, validated with
bioimageio.core and the deepImageJ checks, and only then renamed into place; a package that fails
validation never appears in `packages/`, its report does (`packages/reports/<id>.md`).
Every file is deterministic (weights, tensors, YAML, PNG, zip entry times), so exporting the same
checkpoint twice gives the same bytes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from sparsessp_bmz.bmz import axes, card, covers, rdf, testdata, weights
from sparsessp_bmz.bmz.checks import FileReader
from sparsessp_bmz.bmz.facts import DisplayScale, PackageFacts, package_facts, read_template
from sparsessp_bmz.bmz.index import REPORTS_DIR, write_index
from sparsessp_bmz.bmz.metadata import PublisherMetadata
from sparsessp_bmz.bmz.netsource import write_network_source
from sparsessp_bmz.bmz.validate import PackageReport, validate_package, write_reports
from sparsessp_bmz.bmz.variants import DISPLAY_SCALED, package_id
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.nets.variants import Variant, wrap_variant
from sparsessp_bmz.trained import TrainedModel

#: rdf_templates/ of the repository, installed as the package sparsessp_bmz.rdf_templates.
TEMPLATES_DIR = Path(str(resources.files("sparsessp_bmz.rdf_templates")))
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ExportFailedError(RuntimeError):
    """The built package did not validate; nothing was placed, the report says why."""

    def __init__(self, report: PackageReport, report_path: Path) -> None:
        super().__init__(
            f"package {report.model_id} failed validation and was not placed; see {report_path}"
        )
        self.report = report
        self.report_path = report_path


@dataclass(frozen=True)
class ExportTiming:
    """Seconds spent building and validating one package."""

    build_s: float
    validate_s: float


def write_environment(folder: Path, facts: PackageFacts) -> Path:
    """The state dict's dependencies: only what the shipped network source imports (torch)."""
    content = {
        "name": facts.package_id,
        "channels": ["conda-forge", "nodefaults"],
        "dependencies": ["python>=3.10", "pip", {"pip": [f"torch=={facts.torch_version}"]}],
    }
    path = folder / facts.files.environment
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def _write_tiff(path: Path, image: np.ndarray) -> None:
    import tifffile

    tifffile.imwrite(path, image.astype(np.float32), metadata=None, software=False)


def zip_folder(folder: Path, destination: Path) -> Path:
    """Deterministic zip: sorted entries, fixed times and permissions."""
    with zipfile.ZipFile(destination, "w") as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return destination


def _folder_reader(folder: Path) -> FileReader:
    return lambda name: (folder / name).read_bytes()


def build_folder(
    trained: TrainedModel,
    variant: Variant,
    folder: Path,
    tensors: testdata.TestTensors,
    *,
    metadata: PublisherMetadata | None = None,
    templates: Path = TEMPLATES_DIR,
) -> PackageFacts:
    """Write every file of one package of a single-structure model into the empty `folder`."""
    from sparsessp_bmz.bmz.consumers import static_verdicts

    spec = trained.spec
    spec.check_input_shape(*tensors.sparse.shape)
    net = wrap_variant(trained.net, variant).eval()
    image = testdata.variant_input(tensors, spec, variant)
    raw_prediction = testdata.predict(net, image)
    display = DisplayScale.of(raw_prediction) if variant in DISPLAY_SCALED else None
    prediction = raw_prediction if display is None else display.apply(raw_prediction)
    facts = package_facts(
        trained,
        variant,
        template=read_template(templates),
        metadata=metadata,
        test_source=tensors.source,
        display=display,
    )
    files = facts.files
    np.save(folder / files.test_input, image[None, None])
    np.save(folder / files.test_output, prediction[None, None])
    # the collection runs deepImageJ on the sample tensors and compares with the test outputs,
    # so the samples are the same data
    _write_tiff(folder / files.sample_input, image)
    _write_tiff(folder / files.sample_output, prediction)
    source = write_network_source(folder)
    state = weights.write_state_dict(net, folder)
    example = image[None, None]
    weights.write_torchscript(source, facts.architecture_kwargs, state, example, folder)
    weights.write_onnx(net, example, folder, dynamic_axes=axes.dynamic_axes(spec, variant))
    write_environment(folder, facts)
    volume = (lambda a: a) if image.ndim == 3 else (lambda a: a[None])
    target = None if tensors.target is None else tensors.target
    if target is not None and variant == "plane":
        target = target[0]
    covers.write_cover(
        folder / files.cover,
        volume(image),
        volume(raw_prediction),
        None if target is None else volume(target),
    )
    # the card's consumer table comes from the checks on the RDF itself: build the description
    # (with a placeholder card, which it must find), run the checks, then write the real card
    card_path = folder / files.documentation
    card_path.write_text(f"# {facts.publication.name}\n", encoding="utf-8")
    content = rdf.dump_rdf(rdf.build_description(facts, folder))
    verdicts = static_verdicts(content, _folder_reader(folder))
    template = (templates / "model_card.md").read_text(encoding="utf-8")
    card_path.write_text(card.render_card(template, facts, verdicts), encoding="utf-8")
    rdf.write_rdf(content, folder)
    return facts


def tensors_for(
    trained: TrainedModel, test_input: np.ndarray | None, test_target: np.ndarray | None
) -> testdata.TestTensors:
    """Test tensors from `test_input` (a sparse held-out stack) or the manifest's test split."""
    if test_input is not None:
        return testdata.crop_tensors(
            trained.spec, np.asarray(test_input), test_target, "a held-out volume given to export"
        )
    if trained.manifest is None:
        raise UserInputError(
            f"{trained.spec.model_id}: the checkpoint names no training manifest, so export "
            "cannot take test tensors from a held-out volume; pass test_input"
        )
    return testdata.held_out_tensors(trained)


def _replace(source: Path, destination: Path) -> None:
    """Put `source` at `destination`, removing what was there (same file system: renames)."""
    if destination.is_dir():
        trash = destination.with_name(f".{destination.name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        destination.rename(trash)
        source.rename(destination)
        shutil.rmtree(trash)
    else:
        source.replace(destination)


@dataclass(frozen=True)
class ExportedPackage:
    """One placed package, what it states, and how long building and validating took."""

    archive: Path
    facts: PackageFacts
    timing: ExportTiming


def export_package(
    trained: TrainedModel,
    variant: Variant,
    out_dir: Path,
    tensors: testdata.TestTensors,
    *,
    metadata: PublisherMetadata | None = None,
    templates: Path = TEMPLATES_DIR,
) -> ExportedPackage:
    """Build, validate and place `out_dir/<id>/` and `out_dir/<id>.zip` of one package.

    Raises ExportFailedError (nothing placed, report written) when validation fails.
    """
    if trained.multi_task:
        raise UserInputError(
            f"{trained.spec.model_id} is a multi-task network ({', '.join(trained.spec.tasks)}); "
            "a package has no task input: export it with sparsessp_bmz.bmz.export.export, which "
            "bakes one package per structure, or bake it first with trained.for_task(structure)"
        )
    package = package_id(trained.spec, variant)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{package}.", dir=out_dir))
    try:
        start = time.perf_counter()
        folder = work / package
        folder.mkdir()
        facts = build_folder(
            trained, variant, folder, tensors, metadata=metadata, templates=templates
        )
        archive = zip_folder(folder, work / f"{package}.zip")
        built = time.perf_counter()
        report = validate_package(archive)
        report.source = str(out_dir / f"{package}.zip")
        validated = time.perf_counter()
        _, report_md = write_reports([report], out_dir / REPORTS_DIR, stem=package)
        if not report.passed:
            raise ExportFailedError(report, report_md)
        _replace(folder, out_dir / package)
        _replace(archive, out_dir / f"{package}.zip")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        write_index(out_dir)
    timing = ExportTiming(built - start, validated - built)
    return ExportedPackage(out_dir / f"{package}.zip", facts, timing)


def export_trained(
    trained: TrainedModel,
    out_dir: Path,
    *,
    variant: Variant = "standard",
    test_input: np.ndarray | None = None,
    test_target: np.ndarray | None = None,
    metadata: PublisherMetadata | None = None,
    templates: Path = TEMPLATES_DIR,
) -> Path:
    """Build, validate and place one package of a single-structure model; return its zip.

    `test_input` is a sparse (z, y, x) held-out stack (and `test_target` its dense fluorescence);
    without it the test tensors come from the first test volume of the checkpoint's manifest.
    """
    tensors = tensors_for(trained, test_input, test_target)
    return export_package(
        trained, variant, out_dir, tensors, metadata=metadata, templates=templates
    ).archive
