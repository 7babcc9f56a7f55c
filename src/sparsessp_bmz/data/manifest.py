"""Manifests in the two CSV layouts of the FNet/RepMode tools.

* `path_czi, channel_signal, channel_target, structureProteinName`: one multi-channel file per row
  (AllenCell style; the column is called path_czi whatever the format).
* `path_signal, path_target[, structure]`: one file per image; channels default to 0 and the
  structure to the manifest's file name, as in FNet's one-CSV-per-structure data sets.

Paths are relative to the CSV so a data folder can be moved or shared as a whole. An optional
`split` column (written by `splits.py`) travels with the rows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from sparsessp_bmz.errors import UserInputError

CZI_LAYOUT = ("path_czi", "channel_signal", "channel_target", "structureProteinName")
PAIR_LAYOUT = ("path_signal", "path_target")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ManifestRow:
    """One (TL, fluorescence) pair; `line` is the CSV line so every error can point at it."""

    manifest: Path
    line: int
    signal_path: Path
    signal_channel: int
    target_path: Path
    target_channel: int
    structure: str
    split: str | None
    raw: tuple[tuple[str, str], ...]

    @property
    def where(self) -> str:
        """How error messages name this row."""
        return f"{self.manifest} line {self.line}"

    @property
    def cell_key(self) -> str:
        """Identity of the imaged cell (its TL source), the unit that splits keep together."""
        fields = dict(self.raw)
        return fields.get("path_czi") or fields["path_signal"]

    @property
    def name(self) -> str:
        """A short readable name: file stem and structure."""
        stem = self.signal_path.name.split(".")[0]
        return f"{stem}:{self.structure}"


def channel(value: str, column: str, where: str) -> int:
    """The channel index in `value` of `column`, refused unless a non-negative integer."""
    try:
        index = int(value)
    except ValueError:
        index = -1
    if index < 0:
        raise UserInputError(
            f"{where}: {column} must be a channel index (0, 1, ...), got {value!r}; fix the CSV"
        )
    return index


def _existing(folder: Path, value: str, column: str, where: str) -> Path:
    if not value.strip():
        raise UserInputError(f"{where}: {column} is empty; give a path relative to the CSV")
    path = (folder / value.strip()).resolve()
    if not path.exists():
        raise UserInputError(
            f"{where}: {column} file {value!r} does not exist (looked for {path}); "
            "paths are relative to the CSV"
        )
    return path


def _layout(columns: list[str], manifest: Path) -> tuple[str, ...]:
    if set(CZI_LAYOUT) <= set(columns):
        return CZI_LAYOUT
    if set(PAIR_LAYOUT) <= set(columns):
        return PAIR_LAYOUT
    raise UserInputError(
        f"{manifest}: columns {columns} match no manifest layout; use "
        f"{', '.join(CZI_LAYOUT)} or {', '.join(PAIR_LAYOUT)}[, structure]"
    )


@dataclass(frozen=True)
class ManifestRecord:
    """One data row of a manifest as the CSV gives it: its line and its fields by column (a
    field beyond the header is under the key None, a missing one is None: `csv.DictReader`)."""

    line: int
    fields: dict[str, str]

    def where(self, manifest: Path) -> str:
        """How error messages name this record."""
        return f"{manifest} line {self.line}"


@dataclass(frozen=True)
class ManifestRecords:
    """The records of a manifest CSV in its layout (`CZI_LAYOUT` or `PAIR_LAYOUT`), not yet
    checked beyond being UTF-8 CSV with a known header and at least one row."""

    manifest: Path
    layout: tuple[str, ...]
    records: tuple[ManifestRecord, ...]

    @property
    def signal_column(self) -> str:
        """The column naming the TL image of a row."""
        return "path_czi" if self.layout == CZI_LAYOUT else "path_signal"


def read_records(manifest: Path) -> ManifestRecords:
    """The records of a manifest CSV (resolved path): one clear error for a file that is not
    there, not UTF-8 text, not CSV, of no known layout, or without rows."""
    manifest = Path(manifest).resolve()
    if not manifest.is_file():
        what = "is a folder" if manifest.is_dir() else "does not exist"
        raise UserInputError(f"manifest {manifest} {what}; give the path of a CSV file")
    try:
        # decoded whole first: a CSV that is not UTF-8 (Excel's "CSV" in a legacy code page, or
        # not text at all) is refused with the line of the first bad byte, before any row is used
        text = manifest.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise UserInputError(
            f"{manifest} is not UTF-8 text (byte 0x{err.object[err.start]:02x} on line {line}); "
            f"save the manifest as UTF-8 CSV"
        ) from err
    except OSError as err:
        raise UserInputError(f"manifest {manifest} cannot be read ({err.strerror})") from err
    if "\0" in text:
        raise UserInputError(f"{manifest} is not a CSV text file (it holds NUL bytes); give a CSV")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        layout = _layout(columns, manifest)
        records = tuple(ManifestRecord(reader.line_num, record) for record in reader)
    except csv.Error as err:
        raise UserInputError(
            f"{manifest} line {reader.line_num}: not valid CSV ({err}); fix the file"
        ) from err
    if not records:
        raise UserInputError(f"{manifest}: the manifest has a header but no rows; add images")
    return ManifestRecords(manifest, layout, records)


def read_manifest(manifest: Path) -> list[ManifestRow]:
    """Parse and check a manifest: columns, channel indices and that every file exists."""
    found = read_records(manifest)
    return [_row(found.manifest, found.layout, record) for record in found.records]


def _row(manifest: Path, layout: tuple[str, ...], found: ManifestRecord) -> ManifestRow:
    where, record = found.where(manifest), found.fields
    if None in record or any(record.get(column) is None for column in layout):
        raise UserInputError(f"{where}: the row has a different number of fields than the header")
    folder = manifest.parent
    if layout == CZI_LAYOUT:
        signal = target = _existing(folder, record["path_czi"], "path_czi", where)
        structure = record["structureProteinName"].strip()
        signal_channel = channel(record["channel_signal"], "channel_signal", where)
        target_channel = channel(record["channel_target"], "channel_target", where)
    else:
        signal = _existing(folder, record["path_signal"], "path_signal", where)
        target = _existing(folder, record["path_target"], "path_target", where)
        structure = (record.get("structure") or manifest.stem).strip()
        signal_channel = channel(record.get("channel_signal") or "0", "channel_signal", where)
        target_channel = channel(record.get("channel_target") or "0", "channel_target", where)
    if not structure:
        raise UserInputError(f"{where}: the structure name is empty; name the labelled structure")
    split = (record.get("split") or "").strip() or None
    if split is not None and split not in SPLITS:
        raise UserInputError(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
    return ManifestRow(
        manifest=manifest,
        line=found.line,
        signal_path=signal,
        signal_channel=signal_channel,
        target_path=target,
        target_channel=target_channel,
        structure=structure,
        split=split,
        raw=tuple((k, (v or "").strip()) for k, v in record.items() if k != "split"),
    )


def select_structures(
    rows: list[ManifestRow], structures: tuple[str, ...] | None
) -> list[ManifestRow]:
    """Keep the requested structures; naming one the manifest lacks is an error, not no rows."""
    if structures is None:
        return rows
    present = sorted({row.structure for row in rows})
    missing = [name for name in structures if name not in present]
    if missing:
        raise UserInputError(
            f"{rows[0].manifest}: unknown structure(s) {missing}; the manifest has {present} - "
            f"choose from those, or add images of the structure to the manifest"
        )
    return [row for row in rows if row.structure in structures]
