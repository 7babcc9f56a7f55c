"""The model matrix: skips finished entries, survives a failing one, writes one summary."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from data_fixtures import SMALL_FIELD
from matrix_fixtures import write_matrix

from sparsessp_bmz.data.config import SimulationSettings
from sparsessp_bmz.data.simulate.writer import simulate
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.matrix import run_matrix


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = SimulationSettings(
        cells=4, structures=("dna", "mitochondria"), seed=3, shape=SMALL_FIELD
    )
    return simulate(settings, tmp_path_factory.mktemp("simulated"))


def read_summary(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_matrix_survives_a_failing_entry_and_skips_finished_ones(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the mitochondria entry crashes while training: it fails, the DNA entry still trains and scores
    from sparsessp_bmz.training import run

    real_train = run.train

    def crashing(config, *args, **kwargs):  # type: ignore[no-untyped-def]
        if config.model.organelle == "mitochondria":
            config.run_dir().mkdir(parents=True, exist_ok=True)
            raise RuntimeError("simulated crash of mitochondria")
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(run, "train", crashing)
    matrix = write_matrix(tmp_path, manifest, "[mitochondria, dna]")
    rows, out = run_matrix(matrix)
    by_organelle = {row.organelle: row for row in rows}
    assert by_organelle["mitochondria"].status == "failed"
    assert "mitochondria" in by_organelle["mitochondria"].error
    assert (Path(by_organelle["mitochondria"].run_dir) / "error.log").is_file()
    dna = by_organelle["dna"]
    assert dna.status == "trained" and dna.steps == 2
    assert -10 < dna.r2 < 1 and dna.mse > 0
    summary = read_summary(out)
    assert [r["organelle"] for r in summary] == ["mitochondria", "dna"]
    assert (out / "summary.md").read_text().count("\n") == 4

    rows, _ = run_matrix(matrix)
    again = {row.organelle: row for row in rows}
    assert again["dna"].status == "already finished"
    assert again["dna"].r2 == pytest.approx(dna.r2)
    assert again["mitochondria"].status == "failed"


def test_an_unknown_organelle_stops_the_matrix_before_anything_is_trained(
    manifest: Path, tmp_path: Path
) -> None:
    matrix = write_matrix(tmp_path, manifest, "[dna, golgi]")
    with pytest.raises(UserInputError, match=r"matrix entry golgi/r2/3to2d: .*golgi"):
        run_matrix(matrix)
    assert not (tmp_path / "runs").exists()


def test_an_invalid_entry_config_is_reported_not_raised(manifest: Path, tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path, manifest, "[dna]")
    matrix.write_text(
        matrix.read_text().replace("ratios: [2]", "ratios: [2]\noverrides: ['model.units=15']")
    )
    rows, out = run_matrix(matrix)
    assert rows[0].status == "failed" and "U=15" in rows[0].error
    assert read_summary(out)[0]["status"] == "failed"


def test_an_entry_another_process_trains_is_running_elsewhere_and_its_folder_is_left_alone(
    manifest: Path, tmp_path: Path
) -> None:
    from matrix_fixtures import LockHolderProcess

    from sparsessp_bmz.training.matrix import RUNNING_ELSEWHERE, load_matrix, run_entry

    settings, (entry,) = load_matrix(write_matrix(tmp_path, manifest, "[dna]"))
    run_dir = entry.config.run_dir()
    holder = LockHolderProcess(run_dir)
    try:
        before = sorted(run_dir.iterdir())
        row = run_entry(entry, settings)
        assert sorted(run_dir.iterdir()) == before  # no error.log in a folder it does not hold
    finally:
        holder.stop()
    assert row.status == RUNNING_ELSEWHERE and f"pid {holder.pid}" in row.error


def test_sigusr1_outside_training_stops_the_matrix_after_the_entry_it_arrived_in(
    manifest: Path, tmp_path: Path
) -> None:
    import os
    import signal

    from sparsessp_bmz.training.matrix import load_matrix
    from sparsessp_bmz.training.preemption import Preempted
    from sparsessp_bmz.training.run import is_finished

    matrix = write_matrix(tmp_path, manifest, "[dna, mitochondria]", extra="evaluate: false\n")

    def warn_before_the_first(entry, index: int, total: int) -> None:  # type: ignore[no-untyped-def]
        if index == 0:  # not training yet: without a handler its default action kills pytest
            os.kill(os.getpid(), signal.SIGUSR1)

    with pytest.raises(Preempted, match="after entry 1 of 2"):
        run_matrix(matrix, on_entry=warn_before_the_first)
    _, (dna, mitochondria) = load_matrix(matrix)
    assert is_finished(dna.config) and not mitochondria.config.run_dir().exists()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
