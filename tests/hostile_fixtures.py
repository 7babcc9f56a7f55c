"""Shared machinery of the hostile-input catalogue: run a verb as a user would, and prove that
nothing was created, changed or left half-written."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Outcome:
    """Exit code and what the user saw of one command."""

    code: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """The error text, whitespace collapsed (rich wraps long lines at the console width)."""
        return " ".join(self.stderr.split())

    def assert_one_clear_error(self, *words: str, code: int = 2) -> None:
        """Exit `code`, an `error:` line and no traceback; the message names each of `words`."""
        assert self.code == code, (self.code, self.stdout[-2000:], self.stderr[-2000:])
        assert "Traceback" not in self.stderr + self.stdout, self.stderr[-3000:]
        assert self.message.startswith("error:"), self.stderr[-2000:]
        for word in words:
            assert word.lower() in self.message.lower(), (word, self.message)


def run_cli(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cwd: Path | None = None,
) -> Outcome:
    """`sparsessp-bmz ARGS` through the real entry point (`cli.main`), in this process: user
    errors become one red line and exit code 2 exactly as in a shell, at a fraction of the cost
    of a subprocess per case. Rich wraps at 200 columns so messages stay on one line."""
    from sparsessp_bmz.cli import main

    monkeypatch.setattr(sys, "argv", ["sparsessp-bmz", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")
    if cwd is not None:
        monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def snapshot(*folders: Path) -> dict[str, tuple[int, str]]:
    """Every file (hidden ones too) under `folders`: size and content hash, by path."""
    state: dict[str, tuple[int, str]] = {}
    for folder in folders:
        if not folder.exists():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                state[str(path)] = (len(data), hashlib.sha256(data).hexdigest())
            elif path.is_dir():
                state[str(path) + "/"] = (0, "")
    return state


def assert_unchanged(before: dict[str, tuple[int, str]], *folders: Path) -> None:
    """Nothing created, changed or removed under `folders` since `before`."""
    after = snapshot(*folders)
    created = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (created or removed or changed), {
        "created": created,
        "removed": removed,
        "changed": changed,
    }
