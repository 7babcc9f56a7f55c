"""Manifests: both CSV layouts, paths relative to the CSV, splits, one clear error per problem."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from data_fixtures import small_simulation, write_csv  # noqa: F401

from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.manifest import read_manifest, read_records
from sparsessp_bmz.data.splits import assign_splits, load_splits, rows_for
from sparsessp_bmz.errors import UserInputError

CZI_HEADER = "path_czi,channel_signal,channel_target,structureProteinName"


def _cells(tmp_path: Path, n: int, structures: tuple[str, ...]) -> Path:
    rows = []
    for i in range(n):
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "img" / f"c{i}.ome.tif").touch()
        rows += [f"img/c{i}.ome.tif,0,{k + 1},{s}" for k, s in enumerate(structures)]
    return write_csv(tmp_path / "m.csv", CZI_HEADER, *rows)


def test_fnet_layout_resolves_paths_relative_to_the_csv(tmp_path: Path) -> None:
    manifest = _cells(tmp_path, 1, ("dna",))
    (row,) = read_manifest(manifest)
    assert row.signal_path == row.target_path == (tmp_path / "img" / "c0.ome.tif").resolve()
    assert (row.signal_channel, row.target_channel, row.structure) == (0, 1, "dna")


def test_pair_layout_defaults_structure_to_the_csv_name_and_channels_to_zero(tmp_path) -> None:
    for name in ("s.tif", "t.tif"):
        (tmp_path / name).touch()
    manifest = write_csv(tmp_path / "lamin.csv", "path_signal,path_target", "s.tif,t.tif")
    (row,) = read_manifest(manifest)
    assert (row.structure, row.signal_channel, row.target_channel) == ("lamin", 0, 0)
    assert row.target_path.name == "t.tif"


def test_records_give_the_layout_signal_column_and_lines_without_checking_files(
    tmp_path: Path,
) -> None:
    manifest = write_csv(tmp_path / "m.csv", "path_signal,path_target", "a.tif,b.tif", "c.tif,d")
    found = read_records(manifest)
    assert found.signal_column == "path_signal"
    assert [(r.line, r.fields["path_signal"]) for r in found.records] == [
        (2, "a.tif"),
        (3, "c.tif"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"path_czi,channel_signal,channel_target,structureProteinName\n", "header but no rows"),
        (b"path_signal,path_target\n\xff.tif,b\n", "not UTF-8 text"),
        (b"path_signal,path_target\na\0,b\n", "NUL bytes"),
    ],
)
def test_records_refuse_a_csv_that_cannot_be_used(tmp_path: Path, content: bytes, message) -> None:
    (tmp_path / "m.csv").write_bytes(content)
    with pytest.raises(UserInputError, match=message):
        read_records(tmp_path / "m.csv")


@pytest.mark.parametrize(
    ("header", "line", "message"),
    [
        ("path,channel", "a,0", "match no manifest layout"),
        (CZI_HEADER, "missing.czi,0,1,dna", "does not exist"),
        (CZI_HEADER, "x.czi,zero,1,dna", "channel_signal must be a channel index"),
        (CZI_HEADER, "x.czi,0,1,dna,extra", "different number of fields"),
    ],
)
def test_malformed_manifests_name_the_line_and_the_problem(tmp_path, header, line, message):
    (tmp_path / "x.czi").touch()
    manifest = write_csv(tmp_path / "m.csv", header, line)
    with pytest.raises(UserInputError, match=message) as err:
        read_manifest(manifest)
    assert "m.csv" in str(err.value)
    if header == CZI_HEADER:
        assert "line 2" in str(err.value)


def test_asking_for_a_structure_the_manifest_lacks_is_an_error(tmp_path: Path) -> None:
    settings = DataSettings(manifest=_cells(tmp_path, 4, ("dna",)), structures=("golgi",))
    with pytest.raises(UserInputError, match=r"unknown structure.*golgi.*\['dna'\]"):
        rows_for(settings, "train")


def test_splits_follow_repmode_fractions_per_structure(tmp_path: Path) -> None:
    rows = read_manifest(_cells(tmp_path, 40, ("dna", "actin")))
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for row in assign_splits(rows):
        counts[row.structure, row.split] += 1
    for structure in ("dna", "actin"):
        assert (counts[structure, "test"], counts[structure, "val"]) == (10, 3)
        assert counts[structure, "train"] == 27


def test_a_cell_is_in_the_same_split_for_every_structure(tmp_path: Path) -> None:
    rows = assign_splits(read_manifest(_cells(tmp_path, 30, ("dna", "actin", "mito"))))
    split_of: dict[str, set[str | None]] = defaultdict(set)
    for row in rows:
        split_of[row.cell_key].add(row.split)
    assert all(len(splits) == 1 for splits in split_of.values())
    assert {s for splits in split_of.values() for s in splits} == {"train", "val", "test"}


def test_splits_depend_on_the_seed_not_on_the_row_order(tmp_path: Path) -> None:
    rows = read_manifest(_cells(tmp_path, 20, ("dna",)))
    first = {row.cell_key: row.split for row in assign_splits(rows, seed=42)}
    assert first == {row.cell_key: row.split for row in assign_splits(rows[::-1], seed=42)}
    assert first != {row.cell_key: row.split for row in assign_splits(rows, seed=7)}


def test_the_saved_split_file_is_reused_and_may_be_edited(tmp_path: Path) -> None:
    settings = DataSettings(manifest=_cells(tmp_path, 8, ("dna",)))
    load_splits(settings)
    text = settings.splits_path.read_text().replace(",train\n", ",test\n")
    settings.splits_path.write_text(text)
    assert {row.split for row in load_splits(settings)} <= {"val", "test"}


def test_a_split_file_that_no_longer_matches_the_manifest_is_refused(tmp_path: Path) -> None:
    settings = DataSettings(manifest=_cells(tmp_path, 8, ("dna",)))
    load_splits(settings)
    _cells(tmp_path, 9, ("dna",))
    with pytest.raises(UserInputError, match="delete it to recompute"):
        load_splits(settings)


def test_simulated_manifest_reads_with_ome_voxel_sizes(small_simulation: Path) -> None:  # noqa: F811
    rows = read_manifest(small_simulation)
    assert {row.structure for row in rows} == {"dna", "mitochondria"}
    assert all(row.signal_path.exists() for row in rows)
    assert len(rows) == 8
