"""Guards applied to a package before anything in it is parsed: sizes, zip members, YAML shape.

A package handed to `validate` may come from anyone. Everything here runs on sizes the file
system or the zip's central directory state, and reads at most `MAX_RDF_BYTES + 1` bytes of the
description, so a hostile file costs milliseconds, not minutes and gigabytes (a 200 MB rdf.yaml
inside a 200 KB zip took 166 s and 1.2 GB to fail before these guards).

Python's zipfile never returns more bytes of a member than the central directory declares (it
stops there and reports a CRC error), so checking the declared sizes bounds what any later reader
(ours or bioimageio.core's) can get out of the archive.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from sparsessp_bmz.errors import UserInputError

#: Largest rdf.yaml accepted (ours are ~6 KB; the largest in the bioimage.io collection ~100 KB).
MAX_RDF_BYTES = 2 * 1024**2
#: Largest uncompressed content of a whole package zip (weights included).
MAX_ZIP_TOTAL_BYTES = 16 * 1024**3
#: Most members a package zip may have.
MAX_ZIP_MEMBERS = 10_000
#: A member that expands more than this many times and to more than `BOMB_MIN_BYTES` is a bomb.
MAX_COMPRESSION_RATIO = 200
BOMB_MIN_BYTES = 64 * 1024**2
#: YAML aliases (`*name`) an RDF may use: each can multiply what a reader walks (billion laughs).
MAX_YAML_ALIASES = 100
#: How deep an RDF may nest (ours: 7 levels).
MAX_YAML_DEPTH = 64

_FIX = "give a bioimage.io package (.zip, folder or rdf.yaml)"


def _size(n: int) -> str:
    return f"{n / 1024**2:.1f} MB" if n >= 1024**2 else f"{n / 1024:.0f} KB"


def check_zip(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse a zip whose members are too many, too large, expand absurdly, escape the package
    folder or appear twice (a reader would see one of them, a checker the other)."""
    members = archive.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        raise UserInputError(
            f"{path} has {len(members)} members (limit {MAX_ZIP_MEMBERS}); it is not a model "
            f"package - {_FIX}"
        )
    seen: set[str] = set()
    total = 0
    for info in members:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise UserInputError(
                f"{path}: member {name!r} points outside the package; refusing it - {_FIX}"
            )
        if name in seen:
            raise UserInputError(
                f"{path}: member {name!r} appears twice (readers disagree on which one counts); "
                f"refusing it - re-zip the package folder"
            )
        seen.add(name)
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > BOMB_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise UserInputError(
                f"{path}: member {name!r} expands {ratio:.0f}-fold to {_size(info.file_size)} "
                f"(a zip bomb); refusing it before reading - {_FIX}"
            )
    if total > MAX_ZIP_TOTAL_BYTES:
        raise UserInputError(
            f"{path} expands to {_size(total)} (limit {_size(MAX_ZIP_TOTAL_BYTES)}); refusing it "
            f"before reading - {_FIX}"
        )


def _too_large(where: str, size: int) -> UserInputError:
    return UserInputError(
        f"{where} is {_size(size)}, above the {_size(MAX_RDF_BYTES)} an rdf.yaml may have; "
        f"refusing it before parsing - {_FIX}"
    )


def read_zip_rdf(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    """The description member, its declared size checked first and its read bounded."""
    info = archive.getinfo(name)
    where = f"{path}: {name}"
    if info.file_size > MAX_RDF_BYTES:
        raise _too_large(where, info.file_size)
    try:
        with archive.open(info) as member:
            data = member.read(MAX_RDF_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as err:
        raise UserInputError(
            f"{where} cannot be read ({type(err).__name__}: {err}); the zip is corrupt or "
            f"encrypted - export or download the package again"
        ) from err
    if len(data) > MAX_RDF_BYTES:
        raise _too_large(where, len(data))
    return data


def read_rdf_file(path: Path) -> bytes:
    """An rdf.yaml on disk: a regular file below the size limit, read with a bound."""
    if not path.is_file():
        raise UserInputError(f"{path} is not a regular file - {_FIX}")
    size = path.stat().st_size
    if size > MAX_RDF_BYTES:
        raise _too_large(str(path), size)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RDF_BYTES + 1)
    except OSError as err:
        raise UserInputError(f"{path} cannot be read ({err.strerror or err})") from err
    if len(data) > MAX_RDF_BYTES:
        raise _too_large(str(path), len(data))
    return data


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader (no python tags) that also counts aliases and nesting while composing."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (*name)")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_rdf(where: str, data: bytes) -> dict[str, Any]:
    """The description as a mapping: UTF-8, valid YAML without python tags, not a bomb."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserInputError(
            f"{where} is not UTF-8 text (byte {err.start}); it is not a package description - "
            f"{_FIX}"
        ) from err
    loader = _GuardedLoader(io.StringIO(text))
    try:
        content = loader.get_single_data()
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise UserInputError(
            f"{where} is not a valid package description ({detail}); fix the YAML or export the "
            f"package again"
        ) from err
    except RecursionError as err:
        raise UserInputError(
            f"{where} is not a valid package description (nested too deeply); {_FIX}"
        ) from err
    finally:
        loader.dispose()
    if not isinstance(content, dict):
        raise UserInputError(
            f"{where} is not a package description: its top level is "
            f"{type(content).__name__ if content is not None else 'empty'}, not a mapping - "
            f"{_FIX}"
        )
    return content


#: RDF keys whose values name package files (formats 0.4 and 0.5).
FILE_KEYS = frozenset(
    {
        "source",
        "documentation",
        "covers",
        "test_inputs",
        "test_outputs",
        "sample_inputs",
        "sample_outputs",
        "architecture",
        "dependencies",
        "files",
        "attachments",
        "test_tensor",
        "sample_tensor",
    }
)


def _file_names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [name for item in value for name in _file_names(item)]
    if isinstance(value, dict) and "source" in value:
        return _file_names(value["source"])
    return []


def _outside(name: str) -> bool:
    if "://" in name:
        return False  # remote; nothing local is read
    local = name.removeprefix("conda:").removeprefix("pip:").split(":", 1)[0]
    if len(name) > 1 and name[1] == ":" and name[0].isalpha():  # a Windows drive
        return True
    parts = PurePosixPath(local.replace("\\", "/")).parts
    return local.startswith(("/", "\\", "~")) or ".." in parts


def check_file_sources(where: str, rdf: dict[str, Any]) -> None:
    """Refuse a description naming a local file outside its package (an absolute path,
    `../`): bioimageio.core would read it (`/dev/zero`, someone's data) as a package file."""
    stack: list[Any] = [rdf]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in FILE_KEYS:
                    bad = next((n for n in _file_names(value) if _outside(n)), None)
                    if bad is not None:
                        raise UserInputError(
                            f"{where}: {key} {bad!r} points outside the package; a package may "
                            f"only name its own files (or URLs) - {_FIX}"
                        )
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
