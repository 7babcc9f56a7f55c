"""Hostile-input catalogue for images, `predict`, `simulate`, `split` and `nets`.

Each case builds a bad input the way a user (or an attacker) would meet it, runs the real entry
point and asserts one `error:` line naming the problem and the fix, exit code 2, no traceback,
and that nothing under the test folder was created, changed or left half-written.
"""

from __future__ import annotations

import errno
import os
import struct
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hostile_fixtures import assert_unchanged, run_cli, snapshot
from predict_fixtures import checkpoint

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.guards import ENV_VAR
from sparsessp_bmz.imageio import write_ome_tiff

#: The grid of a sparse r=2 stack for the model: z twice the model's 0.29 um.
SPARSE_GRID = (0.58, 0.29, 0.29)

Build = Callable[[Path, pytest.MonkeyPatch], list[str]]

__all__ = ["checkpoint"]  # fixtures


@dataclass(frozen=True)
class Case:
    name: str
    build: Build
    words: tuple[str, ...]


CASES: list[Case] = []


def case(*words: str) -> Callable[[Build], Build]:
    """Register a builder: it makes the files in `tmp` and returns the command's arguments."""

    def register(build: Build) -> Build:
        CASES.append(Case(build.__name__.removeprefix("case_"), build, words))
        return build

    return register


def tl(tmp: Path, name: str = "tl.ome.tif", shape=(6, 32, 32), voxel=SPARSE_GRID) -> Path:
    """A good sparse TL stack (OME-TIFF with voxel sizes)."""
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    write_ome_tiff(tmp / name, volume, voxel)
    return tmp / name


def predict(tmp: Path, input_path: Path | str, output: Path | str, *extra: str) -> list[str]:
    return ["predict", str(tmp / "model.ckpt"), str(input_path), str(output), *extra]


def truncated(tmp: Path, source: Path, keep: int | float) -> Path:
    """`source` cut after `keep` bytes (or that fraction of it), as a broken copy leaves it."""
    data = source.read_bytes()
    size = keep if isinstance(keep, int) else int(len(data) * keep)
    cut = tmp / f"cut_{source.name}"
    cut.write_bytes(data[:size])
    source.unlink()
    return cut


def claiming_tiff(path: Path, height: int, width: int) -> Path:
    """A 200-byte baseline TIFF whose tags claim a `height` x `width` uint8 plane."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample, SHORT
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # BlackIsZero
        (273, 4, 1, 200),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, min(height * width, 2**32 - 1)),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    data = b"II*\x00" + struct.pack("<I", 8) + ifd
    path.write_bytes(data + bytes(200 - len(data)))
    return path


# --- predict: the output ------------------------------------------------------------------------


@case("INPUT", "destroy", "another output")
def case_output_is_the_input(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    source = tl(tmp)
    return predict(tmp, source, source)


@case("INPUT", "another output")
def case_output_is_a_link_to_the_input(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    source = tl(tmp)
    (tmp / "alias.ome.tif").symlink_to(source)
    return predict(tmp, source, tmp / "alias.ome.tif")


@case("checkpoint", "another output")
def case_output_is_the_checkpoint(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tl(tmp), tmp / "model.ckpt")


@case("is a folder", "file name")
def case_output_is_a_folder(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "results").mkdir()
    return predict(tmp, tl(tmp), tmp / "results")


@case("TIFF", ".ome.tif", ".tiff")
def case_output_named_png(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tl(tmp), tmp / "prediction.png")


@case("TIFF", ".ome.tif")
def case_output_without_extension(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tl(tmp), tmp / "prediction")


@case("read-only", "folder you can write")
def case_output_in_a_read_only_folder(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    folder = tmp / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: play the user the check is for
        real = os.access
        mp.setattr(os, "access", lambda p, mode: False if Path(p) == folder else real(p, mode))
    return predict(tmp, tl(tmp), folder / "prediction.ome.tif")


@case("is a file, not a folder", "another output path")
def case_output_below_a_file(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "notes.txt").write_text("not a folder")
    return predict(tmp, tl(tmp), tmp / "notes.txt" / "prediction.ome.tif")


@case("No space left", "free disk space", "nothing was written")
def case_disk_full_while_writing(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "prediction.ome.tif").write_bytes(b"yesterday's prediction")

    def full_disk(handle, *args, **kwargs):  # type: ignore[no-untyped-def]
        handle.write(b"II*\x00" + bytes(1000))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    source = tl(tmp)
    mp.setattr(tifffile, "imwrite", full_disk)
    return predict(tmp, source, tmp / "prediction.ome.tif")


# --- predict: options ----------------------------------------------------------------------------


@case("banana", "not a torch device", "cpu")
def case_device_banana(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tl(tmp), tmp / "p.ome.tif", "--device", "banana")


@case("CUDA is not available", "--device cpu")
def case_device_cuda_without_cuda(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    mp.setattr(torch.cuda, "is_available", lambda: False)
    return predict(tmp, tl(tmp), tmp / "p.ome.tif", "--device", "cuda")


@case("cuda:7", "1 CUDA device", "cuda:0")
def case_device_cuda_index_beyond_the_machine(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    mp.setattr(torch.cuda, "is_available", lambda: True)
    mp.setattr(torch.cuda, "device_count", lambda: 1)
    return predict(tmp, tl(tmp), tmp / "p.ome.tif", "--device", "cuda:7")


@case("--voxel-size", "implausible", "micrometres")
def case_tiny_voxel_size_option(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    tifffile.imwrite(tmp / "plain.tif", np.random.default_rng(0).normal(size=(6, 32, 32)))
    return predict(tmp, tmp / "plain.tif", tmp / "p.ome.tif", "--voxel-size", "1e-6x1e-6x1e-6")


@case("memory", "--voxel-size", "--memory-limit", ENV_VAR)
def case_voxel_size_of_10_um_needs_too_much_memory(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    mp.setenv(ENV_VAR, "0.5")
    tifffile.imwrite(tmp / "plain.tif", np.random.default_rng(0).normal(size=(6, 32, 32)))
    return predict(tmp, tmp / "plain.tif", tmp / "p.ome.tif", "--voxel-size", "10x10x10")


@case("predicting", "memory", "crop", "--memory-limit")
def case_whole_field_prediction_over_the_limit(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    # reading the 6x32x32 stack fits in 150 kB (98 kB); its sum, weight and output arrays do not
    return predict(tmp, tl(tmp), tmp / "p.ome.tif", "--memory-limit", "0.00015")


@case("--memory-limit", "positive")
def case_negative_memory_limit(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tl(tmp), tmp / "p.ome.tif", "--memory-limit", "-1")


@case(ENV_VAR, "positive number", "unset")
def case_memory_limit_variable_not_a_number(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    mp.setenv(ENV_VAR, "lots")
    return predict(tmp, tl(tmp), tmp / "p.ome.tif")


@case("4 time points", "--time", "0..3")
def case_several_time_points(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    data = np.random.default_rng(0).normal(size=(4, 1, 6, 32, 32)).astype(np.float32)
    tifffile.imwrite(tmp / "movie.ome.tif", data, ome=True, metadata={"axes": "TCZYX"})
    return predict(tmp, tmp / "movie.ome.tif", tmp / "p.ome.tif")


@case("--time 9", "out of range", "0..3")
def case_time_point_out_of_range(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    data = np.random.default_rng(0).normal(size=(4, 1, 6, 32, 32)).astype(np.float32)
    tifffile.imwrite(tmp / "movie.ome.tif", data, ome=True, metadata={"axes": "TCZYX"})
    return predict(tmp, tmp / "movie.ome.tif", tmp / "p.ome.tif", "--time", "9")


@case("--overlap", "[0, 1)")
def case_overlap_of_one_and_a_half(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tl(tmp), tmp / "p.ome.tif", "--overlap", "1.5")


@case("--batch-size", "at least 1")
def case_batch_size_zero(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tl(tmp), tmp / "p.ome.tif", "--batch-size", "0")


@case("window (7, 32, 32)", "multiple of the sparsity ratio")
def case_window_depth_off_the_sparse_grid(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tl(tmp), tmp / "p.ome.tif", "--window", "7x32x32")


# --- predict: bad images ------------------------------------------------------------------------


@case("truncated or corrupt", "copy or export the file again")
def case_tiff_truncated_to_200_bytes(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    tifffile.imwrite(tmp / "plain.tif", np.random.default_rng(0).normal(size=(6, 32, 32)))
    return predict(tmp, truncated(tmp, tmp / "plain.tif", 200), tmp / "p.ome.tif")


@case("truncated or corrupt", "copy or export the file again")
def case_tiff_cut_in_half(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    tifffile.imwrite(tmp / "plain.tif", np.random.default_rng(0).normal(size=(6, 32, 32)))
    return predict(tmp, truncated(tmp, tmp / "plain.tif", 0.5), tmp / "p.ome.tif")


@case("truncated or corrupt", "copy or export the file again")
def case_ome_tiff_cut_in_half_is_not_a_single_plane(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, truncated(tmp, tl(tmp), 0.5), tmp / "p.ome.tif")


@case("truncated or corrupt")
def case_ome_tiff_cut_at_1000_bytes(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, truncated(tmp, tl(tmp), 1000), tmp / "p.ome.tif")


@case("truncated or corrupt")
def case_ome_tiff_without_its_ome_xml_is_not_missing_a_voxel_size(
    tmp: Path, mp: pytest.MonkeyPatch
) -> list[str]:
    source = tl(tmp)
    # tifffile writes the OME-XML description after the pixels: cut into it
    with tifffile.TiffFile(source) as tif:
        xml_at = tif.pages[0].tags["ImageDescription"].valueoffset
    return predict(tmp, truncated(tmp, source, xml_at + 40), tmp / "p.ome.tif")


@case("memory", "60000x60000", "--memory-limit", ENV_VAR)
def case_tiff_tags_claiming_60000_squared(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    mp.setenv(ENV_VAR, "1")
    return predict(tmp, claiming_tiff(tmp / "huge.tif", 60000, 60000), tmp / "p.ome.tif")


@case("implausible", "voxel size", "metadata")
def case_file_recording_a_tiny_voxel_size_is_not_reported_as_nan(
    tmp: Path, mp: pytest.MonkeyPatch
) -> list[str]:
    return predict(tmp, tl(tmp, voxel=(5.8e-7, 2.9e-7, 2.9e-7)), tmp / "p.ome.tif")


@case("cannot read", "as an image", "no installed reader")
def case_random_bytes_named_tif(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "noise.tif").write_bytes(np.random.default_rng(0).bytes(4096))
    return predict(tmp, tmp / "noise.tif", tmp / "p.ome.tif")


@case("empty (0 bytes)", "copy or export")
def case_empty_file(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "empty.tif").write_bytes(b"")
    return predict(tmp, tmp / "empty.tif", tmp / "p.ome.tif")


@case("cannot read", "no installed reader")
def case_input_is_a_plain_folder(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "stack").mkdir()
    return predict(tmp, tmp / "stack", tmp / "p.ome.tif")


@case("does not exist", "TL z-stack")
def case_input_missing(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tmp / "nowhere.ome.tif", tmp / "p.ome.tif")


@case("single 2D plane", "z-stack")
def case_single_plane(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    tifffile.imwrite(tmp / "plane.tif", np.ones((32, 32), np.float32))
    return predict(tmp, tmp / "plane.tif", tmp / "p.ome.tif")


@case("NaN or infinite", "clean")
def case_nan_values(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    volume = np.random.default_rng(0).normal(size=(6, 32, 32)).astype(np.float32)
    volume[2, 3, 4] = np.inf
    write_ome_tiff(tmp / "inf.ome.tif", volume, SPARSE_GRID)
    return predict(tmp, tmp / "inf.ome.tif", tmp / "p.ome.tif")


@case("constant", "no signal")
def case_constant_volume(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    write_ome_tiff(tmp / "flat.ome.tif", np.full((6, 32, 32), 7.0, np.float32), SPARSE_GRID)
    return predict(tmp, tmp / "flat.ome.tif", tmp / "p.ome.tif")


@case("channel 3", "out of range", "--channel")
def case_channel_beyond_the_file(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tl(tmp), tmp / "p.ome.tif", "--channel", "3")


@case("RGB", "photometric='minisblack'")
def case_stack_stored_as_rgb(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    tifffile.imwrite(tmp / "rgb.tif", np.random.default_rng(0).integers(0, 255, (3, 32, 32)))
    return predict(tmp, tmp / "rgb.tif", tmp / "p.ome.tif")


@case("differs from the model's sparsity ratio", "drop --ratio")
def case_ratio_other_than_the_models(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return predict(tmp, tl(tmp), tmp / "p.ome.tif", "--ratio", "4")


# --- simulate ----------------------------------------------------------------------------------


@case("--cells", "greater than or equal to 1")
def case_simulate_zero_cells(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["simulate", str(tmp / "sim"), "--cells", "0"]


@case("--workers")
def case_simulate_zero_workers(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["simulate", str(tmp / "sim"), "--workers", "0"]


@case("--structures", "golgi")
def case_simulate_unknown_structure(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["simulate", str(tmp / "sim"), "--structures", "dna,golgi"]


@case("--shape", "at least 8")
def case_simulate_tiny_shape(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["simulate", str(tmp / "sim"), "--shape", "4x4x4"]


@case("--shape", "DxHxW")
def case_simulate_malformed_shape(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["simulate", str(tmp / "sim"), "--shape", "48x160"]


@case("memory", "smaller --shape", "--memory-limit")
def case_simulate_shape_of_100000_cubed(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["simulate", str(tmp / "sim"), "--shape", "100000x100000x100000"]


@case("memory", "fewer --workers")
def case_simulate_workers_times_field_over_the_limit(
    tmp: Path, mp: pytest.MonkeyPatch
) -> list[str]:
    return ["simulate", str(tmp / "sim"), "--workers", "8", "--memory-limit", "0.5"]


@case("disk space", "fewer --cells")
def case_simulate_more_than_the_free_disk(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    import shutil

    mp.setattr(shutil, "disk_usage", lambda p: types.SimpleNamespace(free=10**6))
    return ["simulate", str(tmp / "sim"), "--cells", "4"]


@case("is a file", "folder")
def case_simulate_into_an_existing_file(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "data").write_text("my notes")
    return ["simulate", str(tmp / "data"), "--cells", "1"]


# --- split -------------------------------------------------------------------------------------


@case("does not exist", "CSV")
def case_split_missing_manifest(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["split", str(tmp / "manifest.csv")]


@case("match no manifest layout", "path_signal")
def case_split_empty_manifest(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "manifest.csv").write_text("")
    return ["split", str(tmp / "manifest.csv")]


@case("no rows", "add images")
def case_split_header_only(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "manifest.csv").write_text("path_signal,path_target,structure\n")
    return ["split", str(tmp / "manifest.csv")]


@case("not UTF-8", "save the manifest as UTF-8")
def case_split_manifest_not_utf8(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "manifest.csv").write_bytes(
        b"path_signal,path_target,structure\ntl\xff.tif,fl.tif,dna\n"
    )
    return ["split", str(tmp / "manifest.csv")]


@case("does not exist", "relative to the CSV")
def case_split_rows_naming_missing_images(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "manifest.csv").write_text("path_signal,path_target,structure\ntl.tif,fl.tif,dna\n")
    return ["split", str(tmp / "manifest.csv")]


@case("cannot write the splits table", "No space left", "free disk space")
def case_split_on_a_full_disk(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    rows = []
    for cell in range(4):
        for kind in ("tl", "fl"):
            (tmp / f"{kind}{cell}.tif").write_bytes(b"image")
        rows.append(f"tl{cell}.tif,fl{cell}.tif,dna")
    (tmp / "manifest.csv").write_text("path_signal,path_target,structure\n" + "\n".join(rows))

    def full_disk(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    mp.setattr(os, "replace", full_disk)
    return ["split", str(tmp / "manifest.csv")]


# --- nets --------------------------------------------------------------------------------------


@case("--ratio 3", "1, 2, 4, 8")
def case_nets_ratio_3(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["nets", "--ratio", "3"]


@case("--ratio 0", "1, 2, 4, 8")
def case_nets_ratio_0(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["nets", "--ratio", "0"]


@case("not divisible", "change --patch")
def case_nets_patch_depth_not_a_multiple_of_r(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["nets", "--ratio", "4", "--patch", "30x128x128"]


@case("--width", "> 0")
def case_nets_zero_width(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["nets", "--width", "0"]


@case("--embedding", "choose from")
def case_nets_unknown_embedding(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["nets", "--embedding", "moe"]


@case("--patch", "DxHxW")
def case_nets_malformed_patch(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["nets", "--patch", "32x128"]


@pytest.mark.parametrize("hostile", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_one_clear_error_and_changes_nothing(
    hostile: Case,
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv(ENV_VAR, raising=False)
    args = hostile.build(tmp_path, monkeypatch)
    before = snapshot(tmp_path)
    outcome = run_cli(args, capsys, monkeypatch, cwd=tmp_path)
    outcome.assert_one_clear_error(*hostile.words)
    assert_unchanged(before, tmp_path)


def test_the_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 25


# --- what the guards and checks let through, and the limit's sources -----------------------------


def test_the_limit_comes_from_the_option_then_the_variable_then_available_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sparsessp_bmz import guards

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(guards, "available_memory", lambda: 8 * guards.GB)
    assert guards.memory_limit() == guards.MemoryLimit(
        4 * guards.GB, "50% of the 8 GB available now"
    )
    monkeypatch.setenv(ENV_VAR, "2.5")
    assert guards.memory_limit().nbytes == int(2.5 * guards.GB)
    with guards.memory_limit_option(16):
        assert guards.memory_limit().nbytes == 16 * guards.GB
        guards.check_memory(15 * guards.GB, "a big volume")
    assert guards.memory_limit().nbytes == int(2.5 * guards.GB)
    with pytest.raises(UserInputError, match=r"needs about 3 GB of memory, more than the 2\.5 GB"):
        guards.check_memory(3 * guards.GB, "a big volume")


def test_available_memory_is_read_from_the_system() -> None:
    from sparsessp_bmz.guards import available_memory

    available = available_memory()
    assert available is None or available > 0


def test_the_time_point_asked_for_is_the_one_predicted(tmp_path: Path) -> None:
    from sparsessp_bmz.imageio import read_prediction_input

    data = np.random.default_rng(0).normal(size=(3, 1, 4, 16, 16)).astype(np.float32)
    data[2] *= 10.0
    data[2, 0, 0, 0, 0] = 1000.0  # a voxel only time point 2 has
    tifffile.imwrite(tmp_path / "movie.ome.tif", data, ome=True, metadata={"axes": "TCZYX"})
    prepared = read_prediction_input(
        tmp_path / "movie.ome.tif", ratio=2, model_voxel_size_um=(0.29,) * 3, time=2
    )
    assert prepared.sparse.shape == (4, 16, 16)
    assert prepared.sparse[0, 0, 0] == prepared.sparse.max()


def test_a_good_prediction_next_to_its_input_still_works(
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tl(tmp_path)
    outcome = run_cli(
        predict(tmp_path, source, tmp_path / "out" / "p.TIFF", "--device", "cpu"),
        capsys,
        monkeypatch,
    )
    assert outcome.code == 0, outcome.stderr
    assert tifffile.imread(tmp_path / "out" / "p.TIFF").shape == (12, 32, 32)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.TIFF"]


def test_a_disk_that_fills_during_simulate_leaves_no_half_written_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tifffile.imwrite
    written: list[int] = []

    def fills_on_the_second(handle, *args, **kwargs):  # type: ignore[no-untyped-def]
        if written:
            handle.write(bytes(1000))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(1)
        return real(handle, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", fills_on_the_second)
    outcome = run_cli(
        ["simulate", tmp_path / "sim", "--cells", "3", "--shape", "8x24x24", "--structures", "dna"],
        capsys,
        monkeypatch,
    )
    outcome.assert_one_clear_error("No space left", "free disk space")
    files = sorted(p.name for p in (tmp_path / "sim").rglob("*") if p.is_file())
    assert files == ["cell_0000.ome.tif"]  # complete; no partial file, no manifest


def test_a_manifest_row_claiming_a_huge_image_is_refused_naming_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparsessp_bmz.data.imageio import read_stack

    monkeypatch.setenv(ENV_VAR, "1")
    huge = claiming_tiff(tmp_path / "huge.tif", 60000, 60000)
    with pytest.raises(UserInputError, match=r"manifest.csv line 2 \(huge.tif\).*46.8 GB"):
        read_stack(huge, 0, "manifest.csv line 2", (0.29, 0.29, 0.29))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ome": True, "metadata": {"axes": "ZYX", "PhysicalSizeZ": 0.29}},
        {"imagej": True, "metadata": {"axes": "ZYX", "spacing": 0.29}},
        {"bigtiff": True},
        {"compression": "zlib"},
        {"tile": (16, 16)},
    ],
    ids=["plain", "ome", "imagej", "bigtiff", "zlib", "tiled"],
)
def test_sound_tiffs_of_every_flavour_are_not_called_damaged(tmp_path: Path, options) -> None:  # type: ignore[no-untyped-def]
    from sparsessp_bmz.data.imageio import read_stack, tiff_damage

    volume = np.random.default_rng(0).normal(size=(5, 32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "ok.tif", volume, photometric="minisblack", **options)
    assert tiff_damage(tmp_path / "ok.tif") is None
    stack = read_stack(tmp_path / "ok.tif", 0, "test", (0.29, 0.29, 0.29))
    np.testing.assert_array_equal(stack.data, volume)


def test_simulating_again_counts_the_space_of_the_images_it_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from sparsessp_bmz.data.config import SimulationSettings
    from sparsessp_bmz.data.simulate.writer import check_simulation, data_set_bytes

    settings = SimulationSettings(cells=2, structures=("dna",), shape=(8, 24, 24))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "cell_0001.ome.tif").write_bytes(bytes(5000))
    (tmp_path / "images" / "notes.txt").write_bytes(bytes(5000))  # not replaced: not counted
    free = data_set_bytes(settings) - 5000
    monkeypatch.setattr(shutil, "disk_usage", lambda p: types.SimpleNamespace(free=free))
    check_simulation(settings, tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: types.SimpleNamespace(free=free - 1))
    with pytest.raises(UserInputError, match="disk space"):
        check_simulation(settings, tmp_path)
