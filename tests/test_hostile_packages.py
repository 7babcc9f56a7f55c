"""Hostile-input catalogue, package side (issue 14): what `validate` and `export` do with broken,
oversized or malicious packages, checkpoints, metadata files and output folders.

Convention (README, "Validation."): a path that is no package description at all is one
`error:` line and exit code 2, before anything is validated or written; a package that reads as a
description but is wrong is a FAIL line and exit code 1 with its report. Code from a package that
is not this project's own never runs without `--trust-code`.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from bmz_fixtures import SPECS, exported_3to2d, synthetic_volume, tiny_trained
from hostile_fixtures import assert_unchanged, run_cli, snapshot

from sparsessp_bmz.bmz import index, limits, package, trust
from sparsessp_bmz.bmz.netsource import SHIPPED_FILE
from sparsessp_bmz.bmz.validate import open_package
from sparsessp_bmz.bmz.variants import package_id
from sparsessp_bmz.errors import UserInputError

__all__ = ["exported_3to2d"]  # fixtures

PACKAGE_ID = package_id(SPECS["3to2d"], "standard")


@pytest.fixture(scope="module")
def our_folder(exported_3to2d: Path) -> Path:
    """The exported package's folder (read only: cases corrupt copies of it)."""
    return exported_3to2d.with_suffix("")


def _rdf(folder: Path) -> dict:
    return yaml.safe_load((folder / "rdf.yaml").read_text(encoding="utf-8"))


def _write_rdf(folder: Path, content: dict) -> None:
    (folder / "rdf.yaml").write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")


def _copy(our_folder: Path, tmp: Path) -> Path:
    folder = tmp / "pkg"
    shutil.copytree(our_folder, folder)
    return folder


# --- validate: no package description at all -> one line, exit 2, nothing written -----------
def _random_zip(tmp: Path, pkg: Path) -> Path:
    path = tmp / "model.zip"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _random_bin(tmp: Path, pkg: Path) -> Path:
    path = tmp / "model.bin"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    return path


def _random_rdf(tmp: Path, pkg: Path) -> Path:
    (pkg / "rdf.yaml").write_bytes(np.random.default_rng(2).bytes(4096))
    return pkg


def _latin1_rdf(tmp: Path, pkg: Path) -> Path:
    (pkg / "rdf.yaml").write_bytes("name: Zellkern-Modell f\xfcr DNA\n".encode("latin-1"))
    return pkg / "rdf.yaml"


def _yaml_syntax_error(tmp: Path, pkg: Path) -> Path:
    (pkg / "rdf.yaml").write_text("name: [unclosed\nweights: {\n", encoding="utf-8")
    return pkg


def _python_tag(tmp: Path, pkg: Path) -> Path:
    marker = tmp / "MARKER"
    (pkg / "rdf.yaml").write_text(
        f"name: !!python/object/apply:os.system ['touch {marker}']\n", encoding="utf-8"
    )
    return pkg


def _list_rdf(tmp: Path, pkg: Path) -> Path:
    (pkg / "rdf.yaml").write_text("- name: a list\n- weights: {}\n", encoding="utf-8")
    return pkg / "rdf.yaml"


def _empty_rdf(tmp: Path, pkg: Path) -> Path:
    (pkg / "rdf.yaml").write_text("", encoding="utf-8")
    return pkg


def _huge_rdf(tmp: Path, pkg: Path) -> Path:
    content = _rdf(pkg)
    content["description"] = "x" * (limits.MAX_RDF_BYTES + 10)
    _write_rdf(pkg, content)
    return pkg


def _billion_laughs(tmp: Path, pkg: Path) -> Path:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 13):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    (pkg / "rdf.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return pkg


def _deep_nesting(tmp: Path, pkg: Path) -> Path:
    (pkg / "rdf.yaml").write_text("name: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    return pkg


def _zip_of(folder: Path, path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, prefix + file.name)
    return path


def _zip_rdf_bomb(tmp: Path, pkg: Path) -> Path:
    """The issue's case: a 200 MB rdf.yaml inside a ~200 KB zip."""
    path = tmp / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("rdf.yaml", b"name: " + b" " * (200 * 1024**2))
    return path


def _zip_large_rdf(tmp: Path, pkg: Path) -> Path:
    path = tmp / "large-rdf.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("rdf.yaml", b"name: " + b" " * (3 * 1024**2))
    return path


def _zip_member_bomb(tmp: Path, pkg: Path) -> Path:
    path = _zip_of(pkg, tmp / "member-bomb.zip")
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("zeros.npy", bytes(100 * 1024**2))
    return path


def _zip_without_rdf(tmp: Path, pkg: Path) -> Path:
    (pkg / "rdf.yaml").unlink()
    return _zip_of(pkg, tmp / "no-rdf.zip")


def _zip_of_the_folder(tmp: Path, pkg: Path) -> Path:
    return _zip_of(pkg, tmp / "nested.zip", prefix="pkg/")


def _zip_traversal(tmp: Path, pkg: Path) -> Path:
    path = _zip_of(pkg, tmp / "traversal.zip")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("../../outside.py", b"print('escaped')\n")
    return path


def _zip_duplicate(tmp: Path, pkg: Path) -> Path:
    path = _zip_of(pkg, tmp / "duplicate.zip")
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr(SHIPPED_FILE, b"import os\nos.system('true')\n")
    return path


def _truncated_zip(tmp: Path, pkg: Path) -> Path:
    whole = _zip_of(pkg, tmp / "whole.zip").read_bytes()
    path = tmp / "truncated.zip"
    path.write_bytes(whole[: len(whole) // 2])
    (tmp / "whole.zip").unlink()
    return path


def _documentation_dev_zero(tmp: Path, pkg: Path) -> Path:
    content = _rdf(pkg)
    content["documentation"] = "/dev/zero"
    _write_rdf(pkg, content)
    return pkg


def _weights_outside(tmp: Path, pkg: Path) -> Path:
    content = _rdf(pkg)
    content["weights"]["torchscript"]["source"] = "../elsewhere/weights_torchscript.pt"
    _write_rdf(pkg, content)
    return pkg


def _zip_cover_outside(tmp: Path, pkg: Path) -> Path:
    content = _rdf(pkg)
    content["covers"] = ["cover.png", "/etc/hostname"]
    _write_rdf(pkg, content)
    return _zip_of(pkg, tmp / "cover-outside.zip")


def _folder_without_rdf(tmp: Path, pkg: Path) -> Path:
    (pkg / "rdf.yaml").unlink()
    return pkg


def _missing(tmp: Path, pkg: Path) -> Path:
    return tmp / "no-such-package.zip"


NOT_A_PACKAGE: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...]]] = {
    "random bytes .zip": (_random_zip, ("not a zip archive", "again")),
    "random bytes file": (_random_bin, ("not UTF-8", "give a bioimage.io package")),
    "random bytes rdf.yaml": (_random_rdf, ("not UTF-8", "give a bioimage.io package")),
    "latin-1 rdf.yaml": (_latin1_rdf, ("not UTF-8",)),
    "YAML syntax error": (_yaml_syntax_error, ("not a valid package description", "fix the YAML")),
    "python tag": (_python_tag, ("python/object/apply", "fix the YAML")),
    "top level a list": (_list_rdf, ("list, not a mapping", "give a bioimage.io package")),
    "empty rdf.yaml": (_empty_rdf, ("empty, not a mapping",)),
    "rdf.yaml above 2 MB": (_huge_rdf, ("2.0 MB", "before parsing")),
    "billion laughs": (_billion_laughs, ("aliases",)),
    "nested 5000 deep": (_deep_nesting, ("nested deeper",)),
    "200 MB rdf.yaml in a zip": (_zip_rdf_bomb, ("200.0 MB", "refusing it before")),
    "3 MB rdf.yaml in a zip": (_zip_large_rdf, ("3.0 MB", "before parsing")),
    "zip bomb member": (_zip_member_bomb, ("zip bomb", "before reading")),
    "zip without rdf.yaml": (_zip_without_rdf, ("holds no rdf.yaml", "not a model package")),
    "zip of the folder": (_zip_of_the_folder, ("pkg/rdf.yaml", "zip the package folder's")),
    "zip member ../": (_zip_traversal, ("outside the package",)),
    "zip member twice": (_zip_duplicate, ("appears twice", "re-zip")),
    "truncated zip": (_truncated_zip, ("truncated", "again")),
    "documentation /dev/zero": (_documentation_dev_zero, ("'/dev/zero' points outside",)),
    "weights in ../": (_weights_outside, ("points outside the package", "own files")),
    "zip cover /etc/hostname": (_zip_cover_outside, ("'/etc/hostname' points outside",)),
    "folder without rdf.yaml": (_folder_without_rdf, ("holds no rdf.yaml", "give a package")),
    "missing path": (_missing, ("does not exist", "give a package")),
}


@pytest.mark.parametrize("case", list(NOT_A_PACKAGE))
def test_validate_refuses_what_is_no_package_with_one_line(
    case: str, our_folder: Path, tmp_path: Path, capsys, monkeypatch
):
    make, words = NOT_A_PACKAGE[case]
    target = make(tmp_path, _copy(our_folder, tmp_path))
    before = snapshot(tmp_path)
    done = run_cli(
        ["validate", target, "--report-dir", tmp_path / "reports"], capsys, monkeypatch, tmp_path
    )
    done.assert_one_clear_error(*words)
    assert_unchanged(before, tmp_path)  # no report, no marker, nothing extracted
    assert not (tmp_path / "MARKER").exists()


def test_a_bad_path_among_good_ones_stops_before_any_validation(
    exported_3to2d: Path, tmp_path: Path, capsys, monkeypatch
):
    before = snapshot(tmp_path)
    done = run_cli(
        ["validate", exported_3to2d, tmp_path / "typo.zip", "--report-dir", tmp_path / "r"],
        capsys,
        monkeypatch,
        tmp_path,
    )
    done.assert_one_clear_error("typo.zip", "does not exist")
    assert "PASS" not in done.stdout
    assert_unchanged(before, tmp_path)


def test_guards_are_fast_on_the_zip_bomb(tmp_path: Path):
    import time

    bomb = _zip_rdf_bomb(tmp_path, tmp_path)
    start = time.perf_counter()
    with pytest.raises(Exception, match="refusing it before"):
        open_package(bomb)
    assert time.perf_counter() - start < 1.0


# --- validate: code from the package ---------------------------------------------------------
def _evil_architecture(folder: Path, marker: Path) -> None:
    """The issue's attack: a state dict whose architecture is `os.system`."""
    content = _rdf(folder)
    content["weights"]["pytorch_state_dict"]["architecture"] = {
        "import_from": "os",
        "callable": "system",
        "kwargs": {"command": f"touch {marker}"},
    }
    content["weights"].pop("onnx")  # one tested format keeps the case quick
    _write_rdf(folder, content)


def test_validate_never_runs_a_foreign_architecture_without_trust_code(
    our_folder: Path, tmp_path: Path, capsys, monkeypatch
):
    folder = _copy(our_folder, tmp_path)
    marker = tmp_path / "MARKER"
    _evil_architecture(folder, marker)
    reports = tmp_path / "reports"
    done = run_cli(["validate", folder, "--report-dir", reports], capsys, monkeypatch, tmp_path)
    assert not marker.exists(), "validate ran the package's architecture"
    # the torchscript format is still tested; the skipped state dict does not fail the package
    assert done.code == 0, done.stdout[-3000:]
    assert "pytorch_state_dict skipped (untrusted code)" in done.stdout
    assert "torchscript ok" in done.stdout
    assert "its architecture imports os.system" in done.stdout and "--trust-code" in done.stdout
    record = json.loads((reports / "validation.json").read_text())[0]
    statuses = {f["weight_format"]: f["status"] for f in record["formats"]}
    assert statuses == {"pytorch_state_dict": "skipped", "torchscript": "passed"}
    assert record["trust_code"] is False and record["passed"] is True
    runner = next(c for c in record["collection"] if c["name"] == "model_runner_tolerance")
    assert runner["passed"] and "pytorch_state_dict" not in runner["message"]
    assert "Not run (`--trust-code` runs them)" in (reports / "validation.md").read_text()

    # with consent the architecture runs (this is what the guard prevents) and fails the test
    trusted = run_cli(
        ["validate", folder, "--report-dir", reports, "--trust-code"], capsys, monkeypatch
    )
    assert marker.exists()
    assert trusted.code == 1 and "pytorch_state_dict valid-format" in trusted.stdout


def test_a_package_whose_only_format_is_untrusted_cannot_pass(
    our_folder: Path, tmp_path: Path, capsys, monkeypatch
):
    """A copy of our package with its network source edited is foreign: nothing runs, and a
    package with nothing tested fails (exit 1, its report says why)."""
    folder = _copy(our_folder, tmp_path)
    marker = tmp_path / "MARKER"
    source = folder / SHIPPED_FILE
    source.write_text(
        source.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n", encoding="utf-8"
    )
    content = _rdf(folder)
    state_dict = content["weights"]["pytorch_state_dict"]
    state_dict["architecture"]["sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
    content["weights"] = {"pytorch_state_dict": state_dict}
    _write_rdf(folder, content)
    done = run_cli(
        ["validate", folder, "--report-dir", tmp_path / "r"], capsys, monkeypatch, tmp_path
    )
    assert not marker.exists()
    assert done.code == 1 and done.stdout.startswith("FAIL ")
    assert "not the network source this sparsessp-bmz generates" in done.stdout
    assert "tested_formats: no weight format was tested and passed" in done.stdout


def _reader(folder: Path):
    return lambda name: (folder / name).read_bytes()


def test_our_own_package_is_recognised_and_fully_trusted(exported_3to2d: Path):
    rdf, read, _ = open_package(exported_3to2d)
    assert trust.untrusted_formats(rdf, read) == {}
    assert trust.is_our_architecture(rdf["weights"]["pytorch_state_dict"], read)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a: a.update(callable="other_builder"), "runs sparsessp_net.py:other_builder"),
        (lambda a: a.update(source="net.py"), "runs net.py:build_package_net"),
        (lambda a: a.update(import_from="sparsessp_net"), "imports sparsessp_net.build_package"),
    ],
)
def test_anything_but_our_exact_architecture_is_untrusted(
    exported_3to2d: Path, change, reason: str
):
    rdf, read, _ = open_package(exported_3to2d)
    change(rdf["weights"]["pytorch_state_dict"]["architecture"])
    assert reason in trust.untrusted_formats(rdf, read)["pytorch_state_dict"]


def test_custom_processing_and_code_carrying_formats_are_untrusted(exported_3to2d: Path):
    rdf, read, _ = open_package(exported_3to2d)
    rdf["weights"]["keras_hdf5"] = {"source": "model.h5"}
    assert set(trust.untrusted_formats(rdf, read)) == {"keras_hdf5"}
    rdf["outputs"][0]["postprocessing"] = [{"id": "custom", "callable": "f", "source": "p.py"}]
    reasons = trust.untrusted_formats(rdf, read)
    assert set(reasons) == set(rdf["weights"]) and "custom" in reasons["onnx"]


# --- export: output folder, destination, checkpoint, metadata --------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint as `train` writes it, of the tiny 3to2d network."""
    from sparsessp_bmz.training.checkpoint import CHECKPOINT_FORMAT
    from sparsessp_bmz.training.config import TrainConfig

    folder = tmp_path_factory.mktemp("checkpoint")
    (folder / "manifest.csv").write_text("path_signal,path_target\n", encoding="utf-8")
    trained = tiny_trained("3to2d")
    config = TrainConfig.model_validate(
        {
            "model": trained.spec.model_dump(mode="json"),
            "data": {"manifest": str(folder / "manifest.csv")},
            "optim": {"max_steps": 10},
            "trainer": {"run_dir": str(folder / "run")},
        }
    )
    path = folder / "best.ckpt"
    torch.save(
        {
            "hyper_parameters": {
                "format": CHECKPOINT_FORMAT,
                "config": config.model_dump(mode="json"),
            },
            "state_dict": {f"net.{k}": v for k, v in trained.net.state_dict().items()},
        },
        path,
    )
    return path


def _edited(checkpoint: Path, tmp: Path, edit: Callable[[dict], None]) -> Path:
    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    edit(content)
    path = tmp / "edited.ckpt"
    torch.save(content, path)
    return path


def _setup_out_file(tmp: Path, ckpt: Path) -> list:
    (tmp / "packages").write_text("not a folder\n")
    return [ckpt, "--out", tmp / "packages"]


def _setup_out_under_file(tmp: Path, ckpt: Path) -> list:
    (tmp / "file").write_text("x\n")
    return [ckpt, "--out", tmp / "file" / "packages"]


def _setup_reports_file(tmp: Path, ckpt: Path) -> list:
    (tmp / "packages").mkdir()
    (tmp / "packages" / "reports").write_text("x\n")
    return [ckpt, "--out", tmp / "packages"]


def _setup_package_name_taken(tmp: Path, ckpt: Path) -> list:
    (tmp / "packages").mkdir()
    (tmp / "packages" / PACKAGE_ID).write_text("a file named like the package folder\n")
    return [ckpt, "--out", tmp / "packages"]


def _setup_zip_name_taken(tmp: Path, ckpt: Path) -> list:
    (tmp / "packages" / f"{PACKAGE_ID}.zip").mkdir(parents=True)
    return [ckpt, "--out", tmp / "packages"]


def _setup_random_checkpoint(tmp: Path, ckpt: Path) -> list:
    (tmp / "model.ckpt").write_bytes(np.random.default_rng(3).bytes(2048))
    return [tmp / "model.ckpt", "--out", tmp / "packages"]


def _setup_truncated_checkpoint(tmp: Path, ckpt: Path) -> list:
    (tmp / "model.ckpt").write_bytes(ckpt.read_bytes()[:5000])
    return [tmp / "model.ckpt", "--out", tmp / "packages"]


def _setup_foreign_checkpoint(tmp: Path, ckpt: Path) -> list:
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp / "model.ckpt")
    return [tmp / "model.ckpt", "--out", tmp / "packages"]


def _setup_missing_checkpoint(tmp: Path, ckpt: Path) -> list:
    return [tmp / "nothing.ckpt", "--out", tmp / "packages"]


def _setup_width_edited(tmp: Path, ckpt: Path) -> list:
    def edit(content: dict) -> None:
        content["hyper_parameters"]["config"]["model"]["width"] = 0.25

    return [_edited(ckpt, tmp, edit), "--out", tmp / "packages"]


def _setup_ratio_invalid(tmp: Path, ckpt: Path) -> list:
    def edit(content: dict) -> None:
        content["hyper_parameters"]["config"]["model"]["ratio"] = 3

    return [_edited(ckpt, tmp, edit), "--out", tmp / "packages"]


def _setup_state_dict_not_a_mapping(tmp: Path, ckpt: Path) -> list:
    def edit(content: dict) -> None:
        content["state_dict"] = [1, 2, 3]

    return [_edited(ckpt, tmp, edit), "--out", tmp / "packages"]


def _metadata_case(text: bytes) -> Callable[[Path, Path], list]:
    def setup(tmp: Path, ckpt: Path) -> list:
        (tmp / "meta.yaml").write_bytes(text)
        return [ckpt, "--out", tmp / "packages", "--metadata", tmp / "meta.yaml"]

    return setup


def _setup_metadata_folder(tmp: Path, ckpt: Path) -> list:
    (tmp / "meta.yaml").mkdir()
    return [ckpt, "--out", tmp / "packages", "--metadata", tmp / "meta.yaml"]


EXPORT_CASES: dict[str, tuple[Callable[[Path, Path], list], tuple[str, ...]]] = {
    "--out is a file": (_setup_out_file, ("is a file, not a folder", "give a folder")),
    "--out under a file": (_setup_out_under_file, ("is a file, not a folder",)),
    "reports is a file": (_setup_reports_file, ("reports is a file", "move it away")),
    "package folder name is a file": (_setup_package_name_taken, (PACKAGE_ID, "move it away")),
    "package zip name is a folder": (_setup_zip_name_taken, ("is a folder", "move it away")),
    "random bytes checkpoint": (_setup_random_checkpoint, ("cannot be read", "corrupt")),
    "truncated checkpoint": (_setup_truncated_checkpoint, ("cannot be read", "corrupt")),
    "foreign checkpoint": (_setup_foreign_checkpoint, ("not written by", "train")),
    "missing checkpoint": (_setup_missing_checkpoint, ("does not exist",)),
    "width edited in checkpoint": (_setup_width_edited, ("do not fit", "edited")),
    "ratio edited to 3": (_setup_ratio_invalid, ("config is invalid",)),
    "state_dict not a mapping": (_setup_state_dict_not_a_mapping, ("state_dict",)),
    "metadata python tag": (
        _metadata_case(b"name: !!python/object/apply:os.system ['true']\n"),
        ("metadata file",),
    ),
    "metadata not UTF-8": (_metadata_case("name: f\xfcr\n".encode("latin-1")), ("UTF-8",)),
    "metadata a list": (_metadata_case(b"- name\n- authors\n"), ("must be a mapping",)),
    "metadata random bytes": (
        _metadata_case(np.random.default_rng(4).bytes(1024)),
        ("metadata file",),
    ),
    "metadata unknown field": (_metadata_case(b"nmae: My model\n"), ("nmae",)),
    "metadata is a folder": (_setup_metadata_folder, ("is a folder",)),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_refuses_bad_input_before_any_work(
    case: str, checkpoint: Path, tmp_path: Path, capsys, monkeypatch
):
    setup, words = EXPORT_CASES[case]
    args = setup(tmp_path, checkpoint)
    before = snapshot(tmp_path)
    done = run_cli(["export", *args], capsys, monkeypatch, tmp_path)
    done.assert_one_clear_error(*words)
    assert_unchanged(before, tmp_path)


def test_export_refuses_a_folder_it_cannot_write(
    checkpoint: Path, tmp_path: Path, capsys, monkeypatch
):
    if os.geteuid() == 0:  # root writes anywhere on a writable disk; /proc refuses even root
        out = Path("/proc") / "sparsessp-packages"
    else:
        (tmp_path / "locked").mkdir(mode=0o555)
        out = tmp_path / "locked" / "packages"
    done = run_cli(["export", checkpoint, "--out", out], capsys, monkeypatch, tmp_path)
    done.assert_one_clear_error("cannot write in", "give a folder you can write")
    assert not out.exists()


# --- export: a full disk, interrupted exports, stray entries ---------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def exportable(monkeypatch) -> None:
    """Export of the checkpoint without a data set: its test tensors from a synthetic volume and
    no held-out scores to compute."""
    from sparsessp_bmz.bmz import export as export_module
    from sparsessp_bmz.bmz.package import tensors_for

    tl, target = synthetic_volume()
    monkeypatch.setattr(
        export_module, "tensors_for", lambda model, ti, tt: tensors_for(model, tl[::2], target)
    )
    monkeypatch.setattr("sparsessp_bmz.scores.scores_of", lambda trained, **kwargs: {})


@pytest.mark.parametrize(
    "where", ["zipfile.ZipFile.writestr", "numpy.save", "pathlib.Path.write_bytes"]
)
def test_a_full_disk_while_exporting_is_one_error_and_leaves_nothing(
    where: str, checkpoint: Path, tmp_path: Path, capsys, monkeypatch, exportable
):
    out = tmp_path / "packages"
    out.mkdir()
    before = snapshot(out)
    monkeypatch.setattr(where, _enospc)
    done = run_cli(["export", checkpoint, "--out", out], capsys, monkeypatch, tmp_path)
    monkeypatch.undo()
    done.assert_one_clear_error("No space left on device", "nothing was placed", "free disk")
    leftovers = sorted(p.name for p in out.iterdir() if p.name not in ("index.json", "index.md"))
    assert leftovers == [], leftovers  # no package, no work folder
    after = {k: v for k, v in snapshot(out).items() if "/index." not in k}
    assert after == before


def _user_folder(out: Path, name: str, age_s: float) -> Path:
    folder = out / name
    folder.mkdir()
    (folder / "data.txt").write_text("mine")
    stamp = os.path.getmtime(folder) - age_s
    for path in (folder, folder / "data.txt"):
        os.utime(path, (stamp, stamp))
    return folder


def _work_folder(out: Path, name: str, owner: dict | None, age_s: float = 0.0) -> Path:
    work = out / name
    (work / PACKAGE_ID).mkdir(parents=True)
    (work / PACKAGE_ID / "weights.pt").write_bytes(b"half-written")
    if owner is not None:
        (work / package.OWNER_FILE).write_text(json.dumps(owner))
    if age_s:
        stamp = os.path.getmtime(work) - age_s
        for path in [work, *work.rglob("*")]:
            os.utime(path, (stamp, stamp))
    return work


def test_work_folders_of_dead_exports_are_cleaned_and_live_ones_kept(tmp_path: Path):
    import socket

    out = tmp_path / "packages"
    out.mkdir()
    host = socket.gethostname()
    # above Linux's largest pid (2**22): a process that cannot exist
    gone = _work_folder(out, f".{PACKAGE_ID}.dead0001", {"host": host, "pid": 2**22 + 17})
    live = _work_folder(out, f".{PACKAGE_ID}.live0001", {"host": host, "pid": os.getpid()})
    remote = _work_folder(out, f".{PACKAGE_ID}.remote01", {"host": "elsewhere", "pid": 1})
    old_remote = _work_folder(
        out, f".{PACKAGE_ID}.remote02", {"host": "elsewhere", "pid": 1}, package.STALE_AFTER_S + 60
    )
    unrecorded_old = _work_folder(out, f".{PACKAGE_ID}.legacy01", None, package.STALE_AFTER_S + 60)
    unrecorded_new = _work_folder(out, f".{PACKAGE_ID}.legacy02", None)
    (out / ".git").mkdir()
    # what exports before work folders had owners left: an old package moved aside
    legacy = _work_folder(out, ".restored-package.old", None, package.STALE_AFTER_S + 60)
    (legacy / "rdf.yaml").write_text("type: model\n")  # a package folder set aside
    age = package.STALE_AFTER_S + 60
    stamp = os.path.getmtime(legacy / PACKAGE_ID)
    for path in (legacy, legacy / "rdf.yaml"):
        os.utime(path, (stamp, stamp))
    # a user's own hidden folders with look-alike names are never touched
    users = [_user_folder(out, name, age) for name in (".notes.old", ".backup.20261101")]
    # a killed export had moved the placed package aside: it is put back
    (gone / package.REPLACED_DIR / "other-package").mkdir(parents=True)
    with pytest.warns(UserWarning, match="interrupted exports"):
        removed = package.clean_work_folders(out)
    assert set(removed) == {gone, old_remote, unrecorded_old, legacy}
    assert (out / "restored-package" / PACKAGE_ID / "weights.pt").is_file()
    for kept in (live, remote, unrecorded_new, out / ".git", *users):
        assert kept.is_dir()
    assert all((user / "data.txt").is_file() for user in users)
    assert (out / "other-package").is_dir()


def test_stray_entries_in_packages_are_skipped_with_a_warning(exported_3to2d: Path, tmp_path: Path):
    out = tmp_path / "packages"
    shutil.copytree(exported_3to2d.parent, out)
    strays = {
        "list": "- not\n- a mapping\n",
        "tag": "name: !!python/object/apply:os.system ['true']\n",
        "syntax": "name: [\n",
        "config-list": "name: x\nconfig: [1, 2]\nweights: [a]\n",
        "metrics-text": "config:\n  sparsessp:\n    test_metrics: {mse: high, ssim: 0.5}\n",
    }
    for name, text in strays.items():
        (out / name).mkdir()
        (out / name / "rdf.yaml").write_text(text, encoding="utf-8")
    (out / "dir-rdf" / "rdf.yaml").mkdir(parents=True)
    (out / "reports" / "config-list.json").write_text("{broken json")
    (out / "a-file-named-like-a-package").write_text("x")
    with pytest.warns(UserWarning) as caught:
        index.write_index(out)
    entries = {e["folder"]: e for e in json.loads((out / "index.json").read_text())["packages"]}
    assert set(entries) == {PACKAGE_ID, "config-list", "metrics-text"}
    assert entries[PACKAGE_ID]["validation"] == "passed"
    assert entries["config-list"]["weights"] == [] and entries["metrics-text"]["metrics"] == {
        "ssim": 0.5
    }
    messages = " ".join(str(w.message) for w in caught)
    for name in ("list", "tag", "syntax", "dir-rdf"):
        assert f"{name}/rdf.yaml" in messages or f"{name}{os.sep}rdf.yaml" in messages
    assert "index.md" in {p.name for p in out.iterdir()}


@pytest.mark.parametrize("member", ["/dev/zero", "../outside.txt", "sub/../../outside.txt"])
def test_the_checks_never_read_outside_a_package_folder(
    our_folder: Path, tmp_path: Path, member: str
):
    (tmp_path / "outside.txt").write_text("secret")
    _, read, _ = open_package(_copy(our_folder, tmp_path))
    with pytest.raises(FileNotFoundError, match="not a file inside the package folder"):
        read(member)
    assert read("rdf.yaml").startswith(b"")


def test_export_cleans_a_killed_exports_work_folder_and_survives_stray_entries(
    checkpoint: Path, tmp_path: Path, capsys, monkeypatch, exportable
):
    """The issue's two export-state cases end to end: a work folder left by kill -9 and a stray
    folder whose rdf.yaml is not a mapping (it used to fail every later export after placing)."""
    import socket

    out = tmp_path / "packages"
    out.mkdir()
    killed = _work_folder(
        out, f".{PACKAGE_ID}.killed01", {"host": socket.gethostname(), "pid": 2**22 + 5}
    )
    (out / "stray").mkdir()
    (out / "stray" / "rdf.yaml").write_text("- not a mapping\n")
    (out / "a-file").write_text("x")
    strays = snapshot(out / "stray")
    with pytest.warns(UserWarning):
        done = run_cli(["export", checkpoint, "--out", out], capsys, monkeypatch, tmp_path)
    assert done.code == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "PASS" in done.stdout
    assert not killed.exists()
    assert (out / PACKAGE_ID / "rdf.yaml").is_file() and (out / f"{PACKAGE_ID}.zip").is_file()
    assert_unchanged(strays, out / "stray")
    assert (out / "a-file").read_text() == "x"
    listed = [e["folder"] for e in json.loads((out / "index.json").read_text())["packages"]]
    assert listed == [PACKAGE_ID]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_zip_with_two_descriptions_is_refused_before_anything_runs(
    exported_3to2d: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    """bioimageio.core would take `a.bioimageio.yaml` (sorted first) while a checker reading
    `rdf.yaml` saw only our trusted architecture: such a zip is refused outright."""
    marker = tmp_path / "ran"
    rdf = yaml.safe_load(zipfile.ZipFile(exported_3to2d).read("rdf.yaml"))
    evil = copy.deepcopy(rdf)
    evil["weights"]["pytorch_state_dict"]["architecture"] = {
        "callable": "system",
        "import_from": "os",
        "kwargs": {"command": f"touch {marker}"},
    }
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(exported_3to2d) as source, zipfile.ZipFile(two, "w") as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
        target.writestr("a.bioimageio.yaml", yaml.safe_dump(evil))
    done = run_cli(["validate", two, "--report-dir", tmp_path / "r"], capsys, monkeypatch, tmp_path)
    done.assert_one_clear_error("several package descriptions", "a.bioimageio.yaml")
    assert not marker.exists()


def test_a_linked_package_path_is_refused_before_any_work(tmp_path: Path):
    out = tmp_path / "packages"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / PACKAGE_ID).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserInputError, match="symbolic link"):
        package.check_out_dir(out, (PACKAGE_ID,))


def test_a_package_given_where_a_checkpoint_belongs_says_what_to_do(
    exported_3to2d: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    before = snapshot(exported_3to2d.parent)
    done = run_cli(["export", exported_3to2d, "--out", tmp_path / "pk"], capsys, monkeypatch)
    done.assert_one_clear_error("is a bioimage.io package", "load_package", "give a .ckpt")
    assert_unchanged(before, exported_3to2d.parent)
    assert not (tmp_path / "pk").exists()
