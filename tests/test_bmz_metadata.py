"""Publisher metadata files: the shipped example loads, and every mistake is one line naming the
file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from sparsessp_bmz.bmz import metadata
from sparsessp_bmz.bmz.metadata import (
    DEFAULT_AUTHOR,
    PublisherMetadata,
    load_metadata,
    placeholder_fields,
)
from sparsessp_bmz.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "rdf_templates" / "metadata_example.yaml"
MINIMAL = "license: MIT\n"


def write(tmp_path: Path, text: str, name: str = "meta.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problem(tmp_path: Path, text: str) -> str:
    """The message of the one UserInputError that loading `text` raises (checked single-line)."""
    path = write(tmp_path, text)
    with pytest.raises(UserInputError) as caught:
        load_metadata(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_the_shipped_example_loads_with_every_field_set_and_nothing_left_to_fill() -> None:
    meta = load_metadata(EXAMPLE)
    unset = [name for name, value in meta if value in (None, [])]
    assert unset == []
    assert meta.authors is not None and meta.authors[0].orcid == "0000-0002-1825-0097"
    assert meta.license == "CC-BY-4.0"
    assert meta.training_data is not None and meta.training_data.kind == "doi"
    assert placeholder_fields(meta) == []


def test_the_example_fills_its_name_for_each_model_within_bioimageio_rules() -> None:
    meta = load_metadata(EXAMPLE)
    values = {"organelle": "mito", "ratio": 4, "topology": "3d", "model_id": "sparsessp-mito-r4-3d"}
    filled = meta.filled(values)
    assert filled.name == "SparseSSP mito r4 3d (Carberry lab)"
    assert filled.description is not None and "{" not in filled.description
    assert meta.name is not None and "{organelle}" in meta.name


def test_a_filled_name_that_grows_past_128_characters_is_refused() -> None:
    meta = PublisherMetadata(name="Model of {organelle}")
    values = {"organelle": "x" * 130, "ratio": 2, "topology": "3d", "model_id": "m"}
    with pytest.raises(UserInputError, match="name"):
        meta.filled(values)


def test_metadata_round_trips_through_its_dump_and_is_frozen() -> None:
    meta = load_metadata(EXAMPLE)
    assert PublisherMetadata.model_validate(meta.model_dump()) == meta
    with pytest.raises(pydantic.ValidationError):
        meta.license = "MIT"  # type: ignore[misc]


def test_an_unknown_field_is_named_with_the_likely_intended_one(tmp_path: Path) -> None:
    message = problem(tmp_path, "auhtors:\n  - name: A Person\n")
    assert "unknown field 'auhtors'" in message
    assert "did you mean 'authors'" in message


def test_an_unknown_field_of_a_person_lists_what_a_person_has(tmp_path: Path) -> None:
    message = problem(tmp_path, "authors:\n  - name: A Person\n    orcd: 0000-0002-1825-0097\n")
    assert "authors[0].orcd" in message
    assert "orcid" in message and "github_user" in message


def test_an_orcid_with_a_wrong_check_digit_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, "authors:\n  - name: A Person\n    orcid: 0000-0002-1825-0098\n")
    assert "authors[0].orcid" in message
    assert "check digit" in message


def test_an_orcid_in_the_wrong_format_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, "authors:\n  - name: A Person\n    orcid: '0000000218250097'\n")
    assert "authors[0].orcid" in message
    assert "0000-0000-0000-000X" in message


def test_an_orcid_link_and_a_lower_case_x_are_stored_as_the_bare_id(tmp_path: Path) -> None:
    text = (
        "authors:\n"
        "  - {name: A, orcid: 'https://orcid.org/0000-0002-1825-0097'}\n"
        "  - {name: B, orcid: 0000-0002-1694-233x}\n"
    )
    meta = load_metadata(write(tmp_path, text))
    assert meta.authors is not None
    assert [a.orcid for a in meta.authors] == ["0000-0002-1825-0097", "0000-0002-1694-233X"]


def test_a_licence_that_is_not_an_spdx_id_is_refused_with_suggestions(tmp_path: Path) -> None:
    message = problem(tmp_path, "license: Apache 2.0\n")
    assert "license" in message and "SPDX" in message
    assert "Apache-2.0" in message


def test_a_deprecated_spdx_id_is_refused_with_its_successors(tmp_path: Path) -> None:
    message = problem(tmp_path, "license: GPL-3.0\n")
    assert "license" in message and "GPL-3.0-only" in message


def test_spdx_ids_match_case_insensitively_and_are_stored_canonically(tmp_path: Path) -> None:
    assert load_metadata(write(tmp_path, "license: cc-by-4.0\n")).license == "CC-BY-4.0"


def test_the_spdx_list_comes_from_bioimageio_spec() -> None:
    from bioimageio.spec.utils import get_spdx_licenses

    shipped = {entry["licenseId"] for entry in get_spdx_licenses()["licenses"]}
    assert set(metadata.spdx_licenses()) == shipped


def test_a_name_with_characters_bioimageio_refuses_is_named(tmp_path: Path) -> None:
    message = problem(tmp_path, "name: 'SparseSSP: nucleus, r2'\n")
    assert "name" in message and "':'" not in message.split("name")[0]
    assert "letters, digits, spaces and _+-()" in message


def test_a_name_shorter_than_five_characters_is_refused(tmp_path: Path) -> None:
    assert "5-128" in problem(tmp_path, "name: Net\n")


def test_an_unknown_placeholder_in_the_name_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, "name: 'SparseSSP {organel}'\n")
    assert "name" in message and "{organel}" in message and "{organelle}" in message


def test_a_description_over_1024_characters_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, f"description: {'word ' * 300}\n")
    assert "description" in message and "1024" in message


def test_a_maintainer_without_github_user_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, "maintainers:\n  - name: A Person\n")
    assert "maintainers[0].github_user" in message and "required" in message


def test_a_github_user_is_checked_by_syntax_only(tmp_path: Path) -> None:
    message = problem(tmp_path, "authors:\n  - name: A Person\n    github_user: '@someone'\n")
    assert "authors[0].github_user" in message and "no @" in message


def test_a_citation_needs_a_doi_or_a_url(tmp_path: Path) -> None:
    message = problem(tmp_path, "cite:\n  - text: A paper\n")
    assert "cite[0]" in message and "doi or a url" in message


def test_a_doi_link_in_a_citation_is_stored_as_the_bare_doi(tmp_path: Path) -> None:
    text = "cite:\n  - text: A paper\n    doi: https://doi.org/10.1038/s41592-018-0111-2\n"
    assert load_metadata(write(tmp_path, text)).cite[0].doi == "10.1038/s41592-018-0111-2"


def test_an_unquoted_version_that_yaml_reads_as_a_number_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, "version: 1.0\n")
    assert "version" in message and "quotes" in message


def test_a_version_that_is_not_semantic_is_refused(tmp_path: Path) -> None:
    assert "semantic version" in problem(tmp_path, "version: v1.2\n")


@pytest.mark.parametrize(
    ("given", "kind", "ref"),
    [
        ("affable-shark", "bioimageio_id", "affable-shark"),
        ("10.5281/zenodo.1234567", "doi", "10.5281/zenodo.1234567"),
        ("https://doi.org/10.5281/zenodo.1234567", "doi", "10.5281/zenodo.1234567"),
        ("https://example.org/data", "url", "https://example.org/data"),
    ],
)
def test_training_data_records_which_kind_of_reference_it_is(
    tmp_path: Path, given: str, kind: str, ref: str
) -> None:
    meta = load_metadata(write(tmp_path, f"training_data: '{given}'\n"))
    assert meta.training_data is not None
    assert (meta.training_data.kind, meta.training_data.ref) == (kind, ref)


def test_training_data_that_is_no_id_doi_or_url_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, "training_data: My Cells 2024\n")
    assert "training_data" in message and "DOI" in message


def test_extra_tags_are_lower_cased_and_deduplicated(tmp_path: Path) -> None:
    meta = load_metadata(write(tmp_path, "tags: [hiPSC, hipsc, Allen-Cell]\n"))
    assert meta.tags == ["hipsc", "allen-cell"]


def test_a_yaml_syntax_error_gives_the_line_and_the_field(tmp_path: Path) -> None:
    message = problem(tmp_path, "license: MIT\nauthors:\n  - name: [A Person\n    orcid: x\n")
    assert "not valid YAML" in message
    assert "authors" in message and "line" in message


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, "- name: A Person\n- license: MIT\n")
    assert "a list" in message and "mapping of fields" in message


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    assert "empty" in problem(tmp_path, "# only a comment\n")


def test_a_python_tag_is_refused_without_building_the_object(tmp_path: Path) -> None:
    message = problem(tmp_path, "license: MIT\nname: !!python/object/apply:os.system ['true']\n")
    assert "!!python/object/apply:os.system" in message and "not allowed" in message
    assert "field 'name'" in message


def test_a_field_given_twice_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, "license: MIT\nlicense: CC-BY-4.0\n")
    assert "'license' is given twice" in message


def test_a_file_over_one_megabyte_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed a file over the size limit")

    monkeypatch.setattr(yaml, "load", never)
    message = problem(tmp_path, MINIMAL + "#" * (metadata.MAX_METADATA_BYTES + 1))
    assert "bytes" in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"meta\.yaml does not exist"):
        load_metadata(tmp_path / "meta.yaml")


def test_without_metadata_every_placeholder_is_reported() -> None:
    assert placeholder_fields(None) == ["authors", "maintainers", "git_repo", "training_data"]


def test_authors_without_a_github_user_still_leave_maintainers_to_set() -> None:
    meta = PublisherMetadata(authors=[{"name": "A Person"}], git_repo="https://example.org/r")
    assert placeholder_fields(meta) == ["authors.github_user", "maintainers", "training_data"]


def test_an_author_with_a_github_user_stands_in_for_maintainers() -> None:
    meta = PublisherMetadata(
        authors=[{"name": "A Person", "github_user": "a-person"}],
        git_repo="https://example.org/r",
        training_data="affable-shark",
    )
    assert placeholder_fields(meta) == []


def test_the_project_default_author_counts_as_a_placeholder() -> None:
    meta = PublisherMetadata(authors=[{"name": DEFAULT_AUTHOR, "github_user": "someone"}])
    assert "authors" in placeholder_fields(meta)
    template = yaml.safe_load((ROOT / "rdf_templates" / "rdf_fields.yaml").read_text())
    assert template["authors"] == [{"name": DEFAULT_AUTHOR}]
