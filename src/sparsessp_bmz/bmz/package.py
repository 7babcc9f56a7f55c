"""Export: a trained model -> a validated package folder and zip under `packages/`.

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
from typing import Any

import numpy as np
import yaml

from sparsessp_bmz.bmz import card, covers, rdf, testdata, weights
from sparsessp_bmz.bmz.validate import PackageReport, validate_package, write_reports
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.trained import TrainedModel

#: rdf_templates/ of the repository, installed as the package sparsessp_bmz.rdf_templates.
TEMPLATES_DIR = Path(str(resources.files("sparsessp_bmz.rdf_templates")))
REPORTS_DIR = "reports"
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


def _training_details(trained: TrainedModel) -> dict[str, Any]:
    t = trained.training
    details: dict[str, Any] = {
        "training_preprocessing": (
            "z-score per volume; random crops on the sparse global grid (phase 0); z/y/x flips"
        ),
        "loss_function": str(t.get("loss", "MSE")),
    }
    for ours, theirs in (
        ("epoch", "training_epochs"),
        ("batch_size", "training_batch_size"),
        ("lr", "initial_learning_rate"),
    ):
        if isinstance(t.get(ours), int | float):
            details[theirs] = float(t[ours])
    return details


def _sparsessp_config(trained: TrainedModel, tensors: testdata.TestTensors) -> dict[str, Any]:
    from sparsessp_bmz import __version__

    spec = trained.spec
    vz, vy, vx = trained.voxel_size_um
    return {
        "spec": rdf.spec_fields(spec),
        "model_id": spec.model_id,
        "voxel_size_um": {
            "input": [vz * spec.ratio, vy, vx],
            "output": [vz, vy, vx],
        },
        "structures": list(trained.structures or (spec.organelle,)),
        "manifest": trained.manifest.name if trained.manifest is not None else None,
        "metrics": {k: float(v) for k, v in sorted(trained.metrics.items())},
        "training": dict(sorted(trained.training.items())),
        "test_tensors": tensors.source,
        "sparsessp_bmz_version": __version__,
    }


def _environment(folder: Path) -> None:
    import torch

    torch_version = torch.__version__.split("+")[0]
    content = {
        "name": "sparsessp-bmz",
        "channels": ["conda-forge", "nodefaults"],
        "dependencies": [
            "python>=3.10",
            "pip",
            {"pip": [f"torch=={torch_version}", "sparsessp-bmz"]},
        ],
    }
    (folder / rdf.PackageFiles().environment).write_text(yaml.safe_dump(content, sort_keys=False))


def _write_tiff(path: Path, volume: np.ndarray) -> None:
    import tifffile

    tifffile.imwrite(path, volume.astype(np.float32), metadata=None, software=False)


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


def build_folder(
    trained: TrainedModel, folder: Path, tensors: testdata.TestTensors, templates: Path
) -> None:
    """Write every file of the package into `folder` (which exists and is empty)."""
    spec = trained.spec
    files = rdf.PackageFiles()
    spec.check_input_shape(*tensors.sparse.shape)
    prediction = testdata.predict(trained.net, tensors.sparse)
    np.save(folder / files.test_input, tensors.sparse[None, None])
    np.save(folder / files.test_output, prediction[None, None])
    _write_tiff(folder / files.sample_input, tensors.sparse)
    _write_tiff(folder / files.sample_output, prediction)
    state = weights.write_state_dict(trained.net, folder)
    example = tensors.sparse[None, None]
    weights.write_torchscript(state, rdf.spec_fields(spec), example, folder)
    weights.write_onnx(trained.net, example, folder, dynamic_z=not spec.fixed_depth)
    _environment(folder)
    covers.write_cover(folder / files.cover, tensors.sparse, prediction, tensors.target)
    template = yaml.safe_load((templates / "rdf_fields.yaml").read_text(encoding="utf-8"))
    values = {
        "organelle": spec.organelle,
        "ratio": spec.ratio,
        "topology": spec.topology,
        "model_id": spec.model_id,
    }
    filled = rdf.fill(template, values)
    tolerance = rdf.Tolerance()
    text = card.render_card(
        (templates / "model_card.md").read_text(encoding="utf-8"),
        trained,
        name=filled["name"],
        description=" ".join(filled["description"].split()),
        citations=filled["cite"],
        tolerance=tolerance,
        test_source=tensors.source,
    )
    (folder / files.documentation).write_text(text, encoding="utf-8")
    descr = rdf.build_description(
        trained,
        folder,
        template,
        sparsessp_config=_sparsessp_config(trained, tensors),
        training_details=_training_details(trained),
        files=files,
        tolerance=tolerance,
    )
    rdf.write_rdf(descr, folder)


def _tensors_for(
    trained: TrainedModel, test_input: np.ndarray | None, test_target: np.ndarray | None
) -> testdata.TestTensors:
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


def export_trained(
    trained: TrainedModel,
    out_dir: Path,
    *,
    test_input: np.ndarray | None = None,
    test_target: np.ndarray | None = None,
    templates: Path = TEMPLATES_DIR,
) -> Path:
    """Build, validate and place `out_dir/<id>/` and `out_dir/<id>.zip`; return the zip.

    `test_input` is a sparse (z, y, x) held-out stack (and `test_target` its dense fluorescence);
    without it the test tensors come from the first test volume of the checkpoint's manifest.
    Raises ExportFailedError (nothing placed, report written) when validation fails.
    """
    return export_with_timing(
        trained, out_dir, test_input=test_input, test_target=test_target, templates=templates
    )[0]


def export_with_timing(
    trained: TrainedModel,
    out_dir: Path,
    *,
    test_input: np.ndarray | None = None,
    test_target: np.ndarray | None = None,
    templates: Path = TEMPLATES_DIR,
) -> tuple[Path, ExportTiming]:
    """`export_trained`, also saying how long building and validating took."""
    from sparsessp_bmz.bmz.index import write_index

    model_id = trained.spec.model_id
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = _tensors_for(trained, test_input, test_target)
    work = Path(tempfile.mkdtemp(prefix=f".{model_id}.", dir=out_dir))
    try:
        start = time.perf_counter()
        folder = work / model_id
        folder.mkdir()
        build_folder(trained, folder, tensors, templates)
        archive = zip_folder(folder, work / f"{model_id}.zip")
        built = time.perf_counter()
        report = validate_package(archive)
        report.source = str(out_dir / f"{model_id}.zip")
        validated = time.perf_counter()
        _, report_md = write_reports([report], out_dir / REPORTS_DIR, stem=model_id)
        if not report.passed:
            raise ExportFailedError(report, report_md)
        _replace(folder, out_dir / model_id)
        _replace(archive, out_dir / f"{model_id}.zip")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        write_index(out_dir)
    return out_dir / f"{model_id}.zip", ExportTiming(built - start, validated - built)
