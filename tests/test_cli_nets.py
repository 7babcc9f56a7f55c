"""The `sparsessp-bmz nets` command and the CLI's handling of bad arguments."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from sparsessp_bmz.cli import app

runner = CliRunner()


def test_nets_prints_every_combination_with_paper_figures():
    result = runner.invoke(app, ["nets"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == 15
    assert "113.86" in result.output and "76.61" in result.output


def test_nets_accepts_a_narrow_width_and_other_patch():
    result = runner.invoke(
        app, ["nets", "--width", "0.25", "--units", "64", "--patch", "16x64x64", "--ratio", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "r=4, patch 16x64x64, width 0.25" in result.output
    assert "113.86" not in result.output  # the paper's figures are for its own width and patch


def test_nets_lists_multitask_embeddings_with_baked_cost():
    result = runner.invoke(app, ["nets", "--embedding", "repmode,tsns"], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == 30
    assert "66.29" in result.output and "55.70" in result.output


def test_unknown_embedding_is_rejected():
    result = runner.invoke(app, ["nets", "--embedding", "moe"])
    assert result.exit_code != 0
    assert "choose from none, dodnet, repmode, tsns" in str(result.exception)


def test_malformed_patch_is_one_clear_error_with_exit_code_2():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sparsessp_bmz.cli import main; main()",
            "nets",
            "--patch",
            "32x128",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "--patch must look like DxHxW" in proc.stderr
    assert "Traceback" not in proc.stderr
