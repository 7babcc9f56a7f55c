"""Export: one package (model x variant) -> a validated package folder and zip under `packages/`.

Everything is built in a hidden temporary folder next to the destination, zipped, validated with
bioimageio.core and the deepImageJ checks, and only then renamed into place; a package that fails
validation never appears in `packages/`, its report does (`packages/reports/<id>.md`).
Every file is deterministic (weights, tensors, YAML, PNG, zip entry times), so exporting the same
checkpoint twice gives the same bytes.

State stays recoverable: the work folder `.<id>.<random>/` records its owner (host, pid, process
start) in `owner.json`; every export first removes work folders whose owner is gone (or, for
another host's or an unrecorded owner, that nobody touched for `STALE_AFTER_S`), putting back a
package a killed export had moved aside while replacing it. A destination that cannot be written
(a file where the folder goes, a read-only folder) is refused before any work, and a full disk
while writing is one UserInputError with nothing placed and no work folder left.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
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


#: Stem suffix of the report of a package that failed validation (reports/<id>.failed.md).
FAILED_SUFFIX = ".failed"


class ExportFailedError(RuntimeError):
    """The built package did not validate; nothing was placed (a package placed earlier under
    the same id stays), the report says why."""

    def __init__(self, report: PackageReport, report_path: Path) -> None:
        super().__init__(
            f"package {report.model_id} failed validation and was not placed (a package placed "
            f"earlier under this id is kept); see {report_path}"
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
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=weights.ZIP_DATE)
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
    image = testdata.variant_input(tensors, spec, variant)
    raw_prediction = testdata.predict(wrap_variant(trained.net, variant), image)
    display = DisplayScale.of(raw_prediction) if variant in DISPLAY_SCALED else None
    net = wrap_variant(trained.net, variant, None if display is None else display.map).eval()
    # the shipped network's own output: the display map applied by torch, as consumers run it
    prediction = raw_prediction if display is None else testdata.predict(net, image)
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


# --- Work folders and placement ------------------------------------------------------------
#: The work folder's record of who owns it.
OWNER_FILE = "owner.json"
#: Inside a work folder: what placing moved aside (put back if the export dies before finishing).
REPLACED_DIR = "replaced"
#: A work folder of another host, or without an owner record, is stale after this long untouched.
STALE_AFTER_S = 3600.0
#: `tempfile.mkdtemp(prefix=".<id>.")` names: a dot, the package id, a dot, 8 random characters.
_WORK_NAME = re.compile(r"^\.(?P<id>[^/]+)\.(?P<random>[a-z0-9_]{8})$")
#: Where exports before 2026-11-22 moved a package aside while replacing it.
_LEGACY_TRASH = re.compile(r"^\.(?P<id>[^/]+)\.old$")
#: Errors of the disk rather than of this program: reported as one line, never a traceback.
DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}
)


def _process_start(pid: int) -> str | None:
    """The process's start time (Linux /proc), to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    return stat.rsplit(")", 1)[-1].split()[19] if ")" in stat else None


def _owner_record() -> dict[str, object]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _process_start(pid)}


def _alive(owner: dict[str, object]) -> bool | None:
    """True/False for an owner on this host; None when it cannot be told (another host)."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, someone else's
        return True
    started = owner.get("started")
    return started is None or _process_start(pid) in (None, started)


def _idle_s(folder: Path) -> float:
    """Seconds since anything in `folder` last changed."""
    newest = 0.0
    for path in [folder, *folder.rglob("*")]:
        try:
            newest = max(newest, path.lstat().st_mtime)
        except OSError:
            continue
    return time.time() - newest


def _abandoned(work: Path) -> bool:
    try:
        owner = json.loads((work / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        owner = None
    alive = _alive(owner) if isinstance(owner, dict) else None
    if alive is not None:
        return not alive
    return _idle_s(work) > STALE_AFTER_S


def clean_work_folders(out_dir: Path) -> list[Path]:
    """Remove the work folders of exports that died (kill -9, power loss) in `out_dir`; put back
    any package such an export had moved aside. Returns what was removed. A live export's work
    folder is never touched; neither is any other hidden entry (`.git`, ...)."""
    removed: list[Path] = []
    if not out_dir.is_dir():
        return removed
    for work in sorted(out_dir.iterdir()):
        if work.is_symlink() or not work.is_dir():
            continue
        legacy = _LEGACY_TRASH.match(work.name)
        # only a package folder set aside by an older export, never a user's `.x.old`
        if legacy and (work / "rdf.yaml").is_file() and _idle_s(work) > STALE_AFTER_S:
            target = out_dir / legacy["id"]
            if not target.exists() and not target.is_symlink():
                work.rename(target)  # that export died before placing the new package
            else:
                shutil.rmtree(work, ignore_errors=True)
            removed.append(work)
            continue
        match = _WORK_NAME.match(work.name)
        # only an export's own work folder (its owner record, or the package folder it builds),
        # never another hidden folder that happens to have a similar name
        ours = match and ((work / OWNER_FILE).is_file() or (work / match["id"]).is_dir())
        if not ours or not _abandoned(work):
            continue
        replaced = work / REPLACED_DIR
        for old in sorted(replaced.iterdir()) if replaced.is_dir() else []:
            target = out_dir / old.name
            if not target.exists() and not target.is_symlink():
                old.rename(target)  # the export died between moving it aside and placing
        shutil.rmtree(work, ignore_errors=True)
        if not work.exists():
            removed.append(work)
    if removed:
        names = ", ".join(w.name for w in removed)
        warnings.warn(f"removed work folders of interrupted exports: {names}", stacklevel=2)
    return removed


def _writable(folder: Path) -> str | None:
    """Why nothing can be written in the existing folder `folder`, or None."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def check_out_dir(out_dir: Path, package_ids: tuple[str, ...] = ()) -> None:
    """Refuse, before any work, an output folder that is a file, sits under a file, cannot be
    written, or where a package's folder/zip, the index or the reports folder would replace
    something of another kind (a file named like a package folder, ...)."""
    out_dir = Path(out_dir)
    existing = out_dir
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserInputError(
            f"--out {out_dir}: {existing} is a file, not a folder; give a folder for the "
            "packages (it is created if missing)"
        )
    why = _writable(existing)
    if why is not None:
        raise UserInputError(
            f"--out {out_dir}: cannot write in {existing} ({why}); give a folder you can write"
        )
    wanted_dirs = [REPORTS_DIR, *package_ids]
    wanted_files = ["index.json", "index.md", *(f"{i}.zip" for i in package_ids)]
    for name in [*wanted_dirs, *wanted_files]:
        path = out_dir / name
        if path.is_symlink():
            raise UserInputError(
                f"{path} is a symbolic link where export puts its own {name}; export replaces it "
                "by renaming, which a link does not survive: remove the link and export again"
            )
    for name in wanted_dirs:
        path = out_dir / name
        if path.exists() and not path.is_dir():
            raise UserInputError(
                f"{path} is a file where export puts a folder; move it away and export again"
            )
    for name in wanted_files:
        path = out_dir / name
        if path.exists() and not path.is_file():
            raise UserInputError(
                f"{path} is a folder where export puts a file; move it away and export again"
            )


def _replace(source: Path, destination: Path, trash: Path) -> Path | None:
    """Put `source` at `destination` (renames, same file system); what was there goes to
    `trash` (inside the work folder) and is returned, so it can be put back."""
    moved = None
    if destination.is_dir() and not destination.is_symlink():
        trash.mkdir(exist_ok=True)
        moved = trash / destination.name
        destination.rename(moved)
    source.replace(destination)
    return moved


def _place(pairs: list[tuple[Path, Path]], trash: Path) -> None:
    """Place every (built, destination) or none: on a failure, the destinations already
    replaced get their old content back."""
    done: list[tuple[Path, Path | None]] = []
    try:
        for source, destination in pairs:
            done.append((destination, _replace(source, destination, trash)))
    except BaseException:  # a full disk, or Ctrl-C between two renames: all or nothing
        for destination, moved in reversed(done):
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination, ignore_errors=True)
            else:
                destination.unlink(missing_ok=True)
            if moved is not None:
                moved.rename(destination)
        raise


def _disk_error(err: OSError, package: str, out_dir: Path) -> UserInputError:
    return UserInputError(
        f"could not write package {package} in {out_dir}: {err.strerror or err}; nothing was "
        "placed - free disk space (or fix the folder's permissions) and export again"
    )


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
    check_out_dir(out_dir, (package,))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        clean_work_folders(out_dir)
        work = Path(tempfile.mkdtemp(prefix=f".{package}.", dir=out_dir))
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        raise _disk_error(err, package, out_dir) from err
    placed = False
    try:
        (work / OWNER_FILE).write_text(json.dumps(_owner_record()) + "\n", encoding="utf-8")
        start = time.perf_counter()
        folder = work / package
        folder.mkdir()
        facts = build_folder(
            trained, variant, folder, tensors, metadata=metadata, templates=templates
        )
        archive = zip_folder(folder, work / f"{package}.zip")
        built = time.perf_counter()
        # our own package: its shipped network source is recognised, every format is tested
        report = validate_package(archive)
        report.source = str(out_dir / f"{package}.zip")
        validated = time.perf_counter()
        reports = out_dir / REPORTS_DIR
        if not report.passed:
            # beside, not over, the report of a package already placed under this id: the index
            # must keep saying that package passed (it stays, untouched)
            _, report_md = write_reports([report], reports, stem=f"{package}{FAILED_SUFFIX}")
            raise ExportFailedError(report, report_md)
        write_reports([report], reports, stem=package)
        for stale in reports.glob(f"{package}{FAILED_SUFFIX}.*"):
            stale.unlink()
        _place(
            [(folder, out_dir / package), (archive, out_dir / f"{package}.zip")],
            work / REPLACED_DIR,
        )
        placed = True
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        raise _disk_error(err, package, out_dir) from err
    finally:
        interrupted = not placed and any((work / REPLACED_DIR).glob("*"))
        if not interrupted:  # else it holds a package moved aside: the next export restores it
            shutil.rmtree(work, ignore_errors=True)
        try:
            write_index(out_dir)
        except OSError as err:  # the index is rebuilt by the next export
            warnings.warn(f"could not rewrite the index of {out_dir}: {err}", stacklevel=2)
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
