"""Publisher metadata: who made a package, under which licence, trained on what.

`sparsessp-bmz export --metadata FILE` reads a small YAML file (start from
`rdf_templates/metadata_example.yaml`) that replaces the project's placeholder metadata (author
"sparsessp-bmz developers", no maintainers, no training data) with the publisher's own. Every
field is checked here against the bioimage.io rules before anything is built, so a typo fails in a
second with one line naming the file, the field and the fix, instead of after export or at upload.

Everything here works offline: ORCID iDs are checked by their check digit, GitHub usernames by
their syntax, licences against the SPDX list that bioimageio.spec ships; nothing is looked up on
the network.

`name` and `description` may contain the placeholders {organelle}, {ratio}, {topology} and
{model_id} (as `rdf_templates/rdf_fields.yaml` does), so one file serves every package of a
matrix; `PublisherMetadata.filled` substitutes them for one model. `card_text` is literal
markdown and is never filled.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sparsessp_bmz.errors import UserInputError

#: Files larger than this are refused before parsing (a metadata file is a few kB).
MAX_METADATA_BYTES = 1_000_000
#: The project's placeholder author (rdf_templates/rdf_fields.yaml).
DEFAULT_AUTHOR = "sparsessp-bmz developers"
#: Where users find a complete, annotated file to copy.
EXAMPLE_FILE = "rdf_templates/metadata_example.yaml"
#: Placeholders `name` and `description` may contain, with typical values used to check lengths
#: before the real model is known (`filled` checks the real ones).
TEMPLATE_FIELDS: dict[str, str] = {
    "organelle": "dna",
    "ratio": "2",
    "topology": "3to2d",
    "model_id": "sparsessp-dna-r2-3to2d",
}

NAME_MIN, NAME_MAX = 5, 128
DESCRIPTION_MAX = 1024
_NAME_CHARS = re.compile(r"[A-Za-z0-9_+\-() ]")
_BRACED = re.compile(r"\{([^{}]*)\}")
_ORCID = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
_ORCID_PREFIXES = ("https://orcid.org/", "http://orcid.org/", "orcid.org/")
# GitHub: 1-39 characters, letters, digits and single hyphens, no hyphen at either end.
_GITHUB_USER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_DOI = re.compile(r"^10\.\d{4,9}/\S+$")
_DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/")
# bioimage.io resource id (bioimageio.spec ResourceId): lower-case letters, digits, _-. and /.
_DATASET_ID = re.compile(r"^[a-z0-9_.\-]+(?:/[a-z0-9_.\-]+)*$")
# https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


# ---- field checks (each raises ValueError with what to do; pydantic adds the location) ---------


def _orcid_check_digit(digits: str) -> str:
    """ISO 7064 MOD 11-2 check character of the first 15 digits of an ORCID iD."""
    total = 0
    for digit in digits:
        total = (total + int(digit)) * 2
    result = (12 - total % 11) % 11
    return "X" if result == 10 else str(result)


def check_orcid(value: str) -> str:
    """A bare ORCID iD (`https://orcid.org/` prefix removed) whose check digit is right."""
    text = value.strip()
    for prefix in _ORCID_PREFIXES:
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    text = text.upper()
    if not _ORCID.match(text):
        raise ValueError(
            f"'{value}' is not an ORCID iD; write it as 0000-0000-0000-000X "
            "(16 digits in 4 groups, the last may be X)"
        )
    digits = text.replace("-", "")
    if _orcid_check_digit(digits[:15]) != digits[15]:
        raise ValueError(
            f"'{value}' fails the ORCID check digit (ISO 7064 MOD 11-2), so a digit is "
            "mistyped; copy the iD from your orcid.org record"
        )
    return text


def check_github_user(value: str) -> str:
    """A syntactically valid GitHub username (never looked up)."""
    if not _GITHUB_USER.match(value):
        raise ValueError(
            f"'{value}' is not a GitHub username: 1-39 letters, digits or single hyphens, not "
            "starting or ending with a hyphen; write the bare name (no @, no URL)"
        )
    return value


def check_http_url(value: str) -> str:
    """An absolute http(s) URL without spaces."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError(f"'{value}' is not an http(s) URL; write it as https://host/path")
    return value


def check_doi(value: str) -> str:
    """A bare DOI (10.NNNN/...); `https://doi.org/` and `doi:` prefixes are removed."""
    text = value.strip()
    for prefix in (*_DOI_PREFIXES, "doi:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :].strip()
    if not _DOI.match(text):
        raise ValueError(
            f"'{value}' is not a DOI; write it as 10.NNNN/suffix, e.g. 10.5281/zenodo.1"
        )
    return text


@functools.lru_cache(maxsize=1)
def spdx_licenses() -> dict[str, bool]:
    """SPDX licence id -> deprecated?, from the list bioimageio.spec ships (read offline).

    The JSON is read from the installed bioimageio.spec without importing it (2 s); if the file
    moved, bioimageio.spec's own reader is used.
    """
    import importlib.util

    found = importlib.util.find_spec("bioimageio.spec")
    locations = list(found.submodule_search_locations or []) if found is not None else []
    for location in locations:
        candidate = Path(location) / "static" / "spdx_licenses.json"
        if candidate.is_file():
            data = json.loads(candidate.read_text(encoding="utf-8"))
            break
    else:
        from bioimageio.spec.utils import get_spdx_licenses

        data = get_spdx_licenses()
    return {entry["licenseId"]: bool(entry["isDeprecatedLicenseId"]) for entry in data["licenses"]}


def check_license(value: str) -> str:
    """A current SPDX licence id in its canonical spelling (ids match case-insensitively)."""
    known = spdx_licenses()
    by_lower = {key.lower(): key for key in known}
    canonical = by_lower.get(value.strip().lower())
    current = [key for key, deprecated in known.items() if not deprecated]
    if canonical is None:
        lowered = value.strip().lower()
        prefixes = [key for key in current if len(key) > 2 and lowered.startswith(key.lower())]
        similar = difflib.get_close_matches(lowered, [key.lower() for key in current], cutoff=0.6)
        close = list(dict.fromkeys([*sorted(prefixes, key=len)[-1:], *map(by_lower.get, similar)]))
        close = close[:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"'{value}' is not an SPDX licence id{hint}; use one from https://spdx.org/licenses/ "
            "such as CC-BY-4.0, MIT or BSD-3-Clause"
        )
    if known[canonical]:
        close = [key for key in current if key.startswith(canonical)][:2]
        hint = f" such as {' or '.join(close)}" if close else ""
        raise ValueError(f"'{canonical}' is a deprecated SPDX id; use a current one{hint}")
    return canonical


def check_version(value: str) -> str:
    """A semantic version (MAJOR.MINOR.PATCH[-pre][+build]) that bioimageio.spec can read."""
    from packaging.version import InvalidVersion, Version

    hint = " without the leading v" if value[:1] in "vV" else ""
    try:
        Version(value)
    except InvalidVersion:
        readable = False
    else:
        readable = True
    if not (_SEMVER.match(value) and readable):
        raise ValueError(
            f"'{value}' is not a semantic version; write MAJOR.MINOR.PATCH{hint}, e.g. 1.0.0 "
            "(pre-release: 1.0.0-rc.1)"
        )
    return value


def _check_template(value: str, field: str) -> None:
    """Braces only around known placeholders; no stray braces."""
    for match in _BRACED.finditer(value):
        if match.group(1) not in TEMPLATE_FIELDS:
            raise ValueError(
                f"'{{{match.group(1)}}}' is not a placeholder; {field} may contain only "
                f"{', '.join('{' + key + '}' for key in TEMPLATE_FIELDS)}"
            )
    if "{" in _BRACED.sub("", value) or "}" in _BRACED.sub("", value):
        raise ValueError(f"{field} has an unmatched brace; remove it")


def fill_template(value: str, values: Mapping[str, object]) -> str:
    """`value` with each {placeholder} of TEMPLATE_FIELDS replaced by `values[placeholder]`."""
    return _BRACED.sub(lambda match: str(values[match.group(1)]), value)


def check_name(value: str) -> str:
    """bioimage.io `name`: 5-128 characters of letters, digits, space and _+-() (after filling)."""
    _check_template(value, "name")
    bad = sorted({char for char in _BRACED.sub("", value) if not _NAME_CHARS.match(char)})
    if bad:
        shown = "".join(bad)
        raise ValueError(
            f"'{value}' has characters bioimage.io does not allow in a name ({shown!r}); use "
            "letters, digits, spaces and _+-() only"
        )
    length = len(fill_template(value, TEMPLATE_FIELDS))
    if not NAME_MIN <= length <= NAME_MAX:
        raise ValueError(
            f"'{value}' is {length} characters long; bioimage.io needs {NAME_MIN}-{NAME_MAX}"
        )
    return value


def check_description(value: str) -> str:
    """One paragraph (whitespace collapsed) of at most 1024 characters (after filling)."""
    text = " ".join(value.split())
    if not text:
        raise ValueError("is empty; write one paragraph or leave description out")
    _check_template(text, "description")
    length = len(fill_template(text, TEMPLATE_FIELDS))
    if length > DESCRIPTION_MAX:
        raise ValueError(
            f"is {length} characters long; bioimage.io allows at most {DESCRIPTION_MAX}: shorten "
            "it and put the details in card_text"
        )
    return text


# ---- models -------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Person(_Strict):
    """An author (or, as `Maintainer`, a maintainer) as bioimage.io describes people."""

    name: str = Field(description="Full name as it should be cited.")
    affiliation: str | None = Field(None, description="Institute, lab or company.")
    email: EmailStr | None = Field(None, description="Contact address (syntax checked only).")
    orcid: str | None = Field(None, description="ORCID iD 0000-0000-0000-000X (check digit).")
    github_user: str | None = Field(None, description="GitHub username (syntax checked only).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value:
            raise ValueError("is empty; write the person's full name")
        if "/" in value or "\\" in value:
            raise ValueError(f"'{value}' contains a slash, which bioimage.io does not allow")
        return value

    @field_validator("affiliation")
    @classmethod
    def _affiliation(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("orcid")
    @classmethod
    def _orcid(cls, value: str | None) -> str | None:
        return None if value is None else check_orcid(value)

    @field_validator("github_user")
    @classmethod
    def _github_user(cls, value: str | None) -> str | None:
        return None if value is None else check_github_user(value)


class Maintainer(Person):
    """A maintainer: bioimage.io identifies (and notifies) maintainers by their GitHub user."""

    github_user: str = Field(description="GitHub username (syntax checked only); required.")


class Citation(_Strict):
    """An extra reference; bioimage.io wants a DOI (preferred) or a URL."""

    text: str = Field(description="The reference as it should be printed.")
    doi: str | None = Field(None, description="Bare DOI 10.NNNN/suffix.")
    url: str | None = Field(None, description="http(s) URL, when there is no DOI.")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        text = " ".join(value.split())
        if not text:
            raise ValueError("is empty; write the reference (authors, title, venue, year)")
        return text

    @field_validator("doi")
    @classmethod
    def _doi(cls, value: str | None) -> str | None:
        return None if value is None else check_doi(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @model_validator(mode="after")
    def _doi_or_url(self) -> Citation:
        if self.doi is None and self.url is None:
            raise ValueError("a citation needs a doi or a url; add one of them")
        return self


TrainingDataKind = Literal["bioimageio_id", "doi", "url"]


def classify_training_data(value: str) -> tuple[TrainingDataKind, str]:
    """('url' | 'doi' | 'bioimageio_id', normalised reference) of a training-data reference."""
    text = value.strip()
    lowered = text.lower()
    if lowered.startswith(("doi:", *_DOI_PREFIXES)) or text.startswith("10."):
        return "doi", check_doi(text)
    if lowered.startswith(("http://", "https://")):
        return "url", check_http_url(text)
    if _DATASET_ID.match(text) and any(char.isalpha() for char in text):
        return "bioimageio_id", text
    raise ValueError(
        f"'{value}' is neither a bioimage.io dataset id (like affable-shark), a DOI "
        "(10.NNNN/suffix) nor an http(s) URL; give one of these"
    )


class TrainingData(_Strict):
    """Where the training data is: a bioimage.io dataset, a DOI or a web page.

    Written in YAML as one string; the kind is recognised from its form (`https://doi.org/...`
    counts as a DOI).
    """

    kind: TrainingDataKind
    ref: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            kind, ref = classify_training_data(data)
            return {"kind": kind, "ref": ref}
        if isinstance(data, dict) and isinstance(data.get("ref"), str):
            kind, ref = classify_training_data(data["ref"])
            if data.get("kind", kind) != kind:
                raise ValueError(f"'{data['ref']}' is a {kind}, not a {data['kind']}")
            return {**data, "kind": kind, "ref": ref}
        if not isinstance(data, dict):
            raise ValueError(
                "must be one string: a bioimage.io dataset id, a DOI or an http(s) URL"
            )
        return data


class PublisherMetadata(_Strict):
    """The publisher's metadata for exported packages; every field unset means "project default".

    `cite`, `tags` and `links` are added to the project's own; the other fields replace the
    project's values (`authors` replaces the placeholder author).
    """

    name: str | None = Field(None, description="bioimage.io name; may use {organelle} etc.")
    description: str | None = Field(None, description="One paragraph, <= 1024 characters.")
    authors: list[Person] | None = Field(None, description="Replace the placeholder author.")
    maintainers: list[Maintainer] | None = Field(None, description="Each with a github_user.")
    license: str | None = Field(None, description="SPDX licence id of the package.")
    version: str | None = Field(None, description="Semantic version of the package.")
    git_repo: str | None = Field(None, description="http(s) URL of the source repository.")
    training_data: TrainingData | None = Field(None, description="Dataset id, DOI or URL.")
    links: list[str] = Field(default_factory=list, description="Related bioimage.io ids.")
    cite: list[Citation] = Field(default_factory=list, description="Extra citations.")
    tags: list[str] = Field(default_factory=list, description="Extra tags (lower-cased).")
    card_text: str | None = Field(None, description="Markdown appended to the model card.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return None if value is None else check_description(value)

    @field_validator("authors", "maintainers")
    @classmethod
    def _not_empty(cls, value: list[Person] | None) -> list[Person] | None:
        if value is not None and not value:
            raise ValueError("is an empty list; give at least one person or leave it out")
        return value

    @field_validator("license")
    @classmethod
    def _license(cls, value: str | None) -> str | None:
        return None if value is None else check_license(value)

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(
                f"YAML read {value!r} as a number; write the version in quotes as "
                "MAJOR.MINOR.PATCH, e.g. '1.0.0'"
            )
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        return None if value is None else check_version(value)

    @field_validator("git_repo")
    @classmethod
    def _git_repo(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("links")
    @classmethod
    def _links(cls, value: list[str]) -> list[str]:
        for link in value:
            if not link or any(char.isspace() for char in link):
                raise ValueError(
                    f"{link!r} is not a bioimage.io id; write ids like deepimagej/deepimagej"
                )
        return list(dict.fromkeys(value))

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        tags = [" ".join(tag.split()).lower() for tag in value]
        for tag in tags:
            if not tag:
                raise ValueError("has an empty tag; remove it")
            if "{" in tag or "}" in tag:
                raise ValueError(f"tag '{tag}' has a brace; tags are plain words like 'nucleus'")
        return list(dict.fromkeys(tags))

    @field_validator("card_text")
    @classmethod
    def _card_text(cls, value: str | None) -> str | None:
        return value or None

    def filled(self, values: Mapping[str, object]) -> PublisherMetadata:
        """A copy with {placeholders} in `name` and `description` replaced for one model.

        `values` maps every name in TEMPLATE_FIELDS (organelle, ratio, topology, model_id);
        a filled name or description breaking a bioimage.io length rule is a UserInputError.
        """
        missing = sorted(set(TEMPLATE_FIELDS) - set(values))
        if missing:
            raise KeyError(f"filled() needs values for {', '.join(missing)}")
        update: dict[str, str] = {}
        for field in ("name", "description"):
            text = getattr(self, field)
            if text is None:
                continue
            filled = fill_template(text, values)
            try:
                (check_name if field == "name" else check_description)(filled)
            except ValueError as err:
                raise UserInputError(
                    f"metadata {field} for {values['model_id']}: {err}".replace("\n", " ")
                ) from err
            update[field] = filled
        return self.model_copy(update=update)


# ---- placeholders ---------------------------------------------------------------------------


def placeholder_fields(meta: PublisherMetadata | None) -> list[str]:
    """Fields a package built with `meta` still has as project placeholders.

    bioimage.io expects, before upload: real authors (not "sparsessp-bmz developers"), at least
    one of them with a github_user, maintainers identified by GitHub (bioimageio.spec falls back
    to authors with a github_user), the training data and the source repository. Everything else
    has a usable project default (name, description, licence MIT, version, citations, tags).
    """
    missing: list[str] = []
    authors = meta.authors if meta is not None else None
    real_authors = [a for a in authors or [] if a.name.strip().lower() != DEFAULT_AUTHOR]
    if not real_authors:
        missing.append("authors")
    elif not any(author.github_user for author in real_authors):
        missing.append("authors.github_user")
    maintainers = meta.maintainers if meta is not None else None
    if not maintainers and not any(author.github_user for author in real_authors):
        missing.append("maintainers")
    if meta is None or meta.git_repo is None:
        missing.append("git_repo")
    if meta is None or meta.training_data is None:
        missing.append("training_data")
    return missing


# ---- loading -----------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the field '{key}' is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_KEY_LINE = re.compile(r"^(\s*(?:-\s+)*)([A-Za-z_][\w-]*)\s*:(?:\s|$)")


def _field_near(text: str, line: int) -> str | None:
    """Dotted path of the YAML key on or above `line` (0-based), from indentation alone."""
    lines = text.splitlines()
    path: list[str] = []
    indent: int | None = None
    for number in range(min(line, len(lines) - 1), -1, -1):
        match = _KEY_LINE.match(lines[number])
        if match is None:
            continue
        column = len(match.group(1))
        if indent is None or column < indent:
            path.append(match.group(2))
            indent = column
            if column == 0:
                break
    return ".".join(reversed(path)) or None


def _yaml_problem(err: yaml.YAMLError, path: Path, text: str) -> str:
    source = f"metadata file {path}"
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return f"{source}: not valid YAML ({' '.join(str(err).split())}); fix the syntax"
    # An unclosed bracket or quote is reported where parsing gave up; the context mark is where
    # the broken value started, which names the field the user has to fix.
    start = getattr(err, "context_mark", None) or mark
    lines = sorted({start.line + 1, mark.line + 1})
    where = f"line {lines[0]}" if len(lines) == 1 else f"lines {lines[0]}-{lines[1]}"
    field = _field_near(text, start.line)
    if field:
        where += f", field '{field}'"
    problem = str(getattr(err, "problem", "") or err)
    if isinstance(err, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = re.search(r"'([^']*)'", problem)
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!") if tag else "a YAML tag"
        return (
            f"{source} ({where}): the tag {shown} is not allowed; write plain YAML values "
            "(text, numbers, lists, mappings) without !! tags"
        )
    if "given twice" in problem:
        return f"{source} ({where}): {problem}; keep one"
    context = getattr(err, "context", None)
    detail = f"{problem} {context}" if context else problem
    return (
        f"{source} ({where}): not valid YAML ({' '.join(detail.split())}); fix the syntax, "
        "e.g. quote text that contains ': ' or ' #'"
    )


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UserInputError(
            f"metadata file {path} {what}; give a YAML file (start from {EXAMPLE_FILE})"
        )
    size = path.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise UserInputError(
            f"metadata file {path} is {size} bytes; a metadata file must be under "
            f"{MAX_METADATA_BYTES} bytes (put long text in card_text, not whole documents)"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise UserInputError(f"metadata file {path} cannot be read ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise UserInputError(
            f"metadata file {path} is not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from err
    try:
        loaded = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise UserInputError(_yaml_problem(err, path, text)) from err
    if not isinstance(loaded, dict):
        got = "empty" if loaded is None else f"a {type(loaded).__name__}"
        raise UserInputError(
            f"metadata file {path} is {got}; its top level must be a mapping of fields "
            f"(name, authors, license, ...), see {EXAMPLE_FILE}"
        )
    return loaded


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose fields are valid at `loc` (the parent of an unknown key)."""
    model: type[BaseModel] | None = PublisherMetadata
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _inner_model(field.annotation) if field is not None else None
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None or get_args(annotation):
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


_MISSING_HINTS = {
    "github_user": "maintainers are identified and notified by their GitHub username",
    "name": "write the person's full name",
    "text": "write the reference as it should be printed",
}


def _describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    where = _location(loc)
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = list(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown field '{where}'; {guess}allowed here: {', '.join(allowed)}"
    if error["type"] == "missing":
        hint = _MISSING_HINTS.get(str(loc[-1]), "add it")
        return f"'{where}' is required; {hint}"
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    shown = repr(given)
    if isinstance(given, (str, int, float, bool)) and str(given) not in message and len(shown) < 60:
        message += f" (got {shown})"
    if error["type"].endswith("_type"):
        message += f"; see {EXAMPLE_FILE} for the layout"
    return f"{where} {message}" if message.startswith(("is ", "has ")) else f"{where}: {message}"


def load_metadata(path: Path) -> PublisherMetadata:
    """Read and check a publisher metadata file; any problem is one UserInputError line.

    The file is parsed with a safe loader (no Python tags), refused above MAX_METADATA_BYTES,
    and every field is validated offline.
    """
    path = Path(path)
    raw = _read_mapping(path)
    try:
        return PublisherMetadata.model_validate(raw)
    except ValidationError as err:
        errors = err.errors()
        more = len(errors) - 1
        tail = f" ({more} more problem{'s' if more > 1 else ''} after this one)" if more else ""
        message = f"metadata file {path}: {_describe(errors[0])}{tail}"
        raise UserInputError(" ".join(message.split())) from err
