"""The wheel's package list: complete, and carrying the package templates."""

from __future__ import annotations

from pathlib import Path

from sparsessp_bmz.bmz.package import TEMPLATES_DIR

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]


def test_every_source_package_and_the_templates_are_listed_for_the_wheel() -> None:
    source = {
        ".".join(init.parent.relative_to(ROOT / "src").parts)
        for init in (ROOT / "src").rglob("__init__.py")
    }
    assert set(_setuptools()["packages"]) == source | {"sparsessp_bmz.rdf_templates"}


def test_templates_resolve_to_the_repository_folder_with_every_template_shipped() -> None:
    assert TEMPLATES_DIR.resolve() == (ROOT / "rdf_templates").resolve()
    shipped = _setuptools()["package-data"]["sparsessp_bmz.rdf_templates"]
    templates = {p.name for p in TEMPLATES_DIR.iterdir() if p.is_file() and p.suffix != ".py"}
    assert templates and all(any(p.match(g) for g in shipped) for p in map(Path, templates))
