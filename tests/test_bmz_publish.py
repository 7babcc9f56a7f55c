"""A plain `train` run, exported with a publisher's metadata file, is ready to publish as it is."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from data_fixtures import small_simulation
from training_fixtures import tiny_raw
from typer.testing import CliRunner
from venv_fixtures import (
    assert_every_format_passes,
    bioimageio_test,
    env_without_the_project,
    old_core_venv,
)

from sparsessp_bmz import evaluation
from sparsessp_bmz.bmz.metadata import EXAMPLE_FILE, load_metadata
from sparsessp_bmz.bmz.offline import github_users
from sparsessp_bmz.cli import app
from sparsessp_bmz.scores import STAMP_FILE, evaluation_dir
from sparsessp_bmz.training.config import config_from_mapping
from sparsessp_bmz.training.run import train

__all__ = ["small_simulation"]  # fixtures

BIOIMAGEIO = Path(sys.executable).with_name("bioimageio")
METADATA = Path(__file__).resolve().parents[1] / EXAMPLE_FILE


def _train(manifest: Path, run_dir: Path) -> Path:
    raw = tiny_raw(manifest, run_dir)
    return train(config_from_mapping(raw, "test")).best_checkpoint


@pytest.fixture(scope="module")
def published(small_simulation: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip exported from a fresh run with the shipped example metadata."""
    work = tmp_path_factory.mktemp("publish")
    checkpoint = _train(small_simulation, work / "run")
    out = work / "packages"
    result = CliRunner().invoke(
        app, ["export", str(checkpoint), "--out", str(out), "--metadata", str(METADATA)]
    )
    assert result.exit_code == 0, result.output
    assert "placeholders" not in result.output  # the example sets every field upload needs
    return out / "sparsessp-dna-r2-3to2d.zip"


def test_publisher_metadata_replaces_the_project_placeholders(published: Path):
    meta = load_metadata(METADATA)
    rdf = yaml.safe_load(zipfile.ZipFile(published).read("rdf.yaml"))
    assert [a["name"] for a in rdf["authors"]] == [a.name for a in meta.authors or []]
    assert rdf["authors"][0]["github_user"] == meta.authors[0].github_user  # type: ignore[index]
    assert [m["github_user"] for m in rdf["maintainers"]] == [
        m.github_user for m in meta.maintainers or []
    ]
    assert rdf["license"] == meta.license and rdf["version"] == meta.version
    assert rdf["git_repo"] == meta.git_repo
    card = zipfile.ZipFile(published).read("README.md").decode()
    assert meta.training_data is not None and meta.training_data.ref in card
    assert (meta.card_text or "").strip().splitlines()[0] in card


def test_export_of_a_plain_run_puts_the_held_out_test_metrics_in_card_and_rdf(published: Path):
    rdf = yaml.safe_load(zipfile.ZipFile(published).read("rdf.yaml"))
    metrics = rdf["config"]["sparsessp"]["test_metrics"]
    assert set(metrics) == {"mse", "mae", "r2", "pearson"}
    card = zipfile.ZipFile(published).read("README.md").decode()
    assert "| R² |" in card and "records no held-out test metrics" not in card
    assert rdf["config"]["bioimageio"]["training"]["training_epochs"] >= 1


def test_the_run_is_evaluated_once_and_later_exports_read_it_back(
    published: Path, small_simulation: Path, monkeypatch: pytest.MonkeyPatch
):
    run_dir = published.parent.parent / "run"
    assert (evaluation_dir(run_dir) / STAMP_FILE).is_file()

    def no_second_evaluation(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the stored evaluation of this checkpoint was not reused")

    monkeypatch.setattr(evaluation, "evaluate_model", no_second_evaluation)
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    again = published.parent.parent / "again"
    result = CliRunner().invoke(app, ["export", str(checkpoint), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert "placeholders: authors, maintainers, git_repo, training_data" in result.output


def test_package_passes_the_collection_profile_offline(published: Path, tmp_path: Path):
    result = CliRunner().invoke(
        app,
        ["validate", str(published), "--profile", "collection", "--report-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert "not checked" in result.output  # the GitHub accounts, which need --online


def test_package_passes_bioimageio_test_without_the_project(published: Path, tmp_path: Path):
    rdf = yaml.safe_load(zipfile.ZipFile(published).read("rdf.yaml"))
    env = env_without_the_project(tmp_path / "blocker", tuple(github_users(rdf)))
    result = bioimageio_test([str(BIOIMAGEIO)], published, tmp_path / "run", env)
    assert_every_format_passes(result)


@pytest.mark.slow
@pytest.mark.parametrize("core", ["0.10.4", "0.10.2"])  # BMZ model runner; ilastik's tiktorch
def test_published_package_passes_bioimageio_core_0_10(published: Path, core: str, tmp_path: Path):
    python = old_core_venv(core) / "bin" / "python"
    rdf = yaml.safe_load(zipfile.ZipFile(published).read("rdf.yaml"))
    env = env_without_the_project(tmp_path / "blocker", tuple(github_users(rdf)))
    result = bioimageio_test([str(python), "-m", "bioimageio.core"], published, tmp_path, env)
    assert_every_format_passes(result)
