"""What every consumer and collection check returns, so `validate` can report them side by side.

The checks read the raw YAML of a package as written (not what bioimageio.spec makes of it on
load) plus the files it points at, so they work for any package, ours or foreign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

#: Reads a package-relative file (zip member or file next to the RDF) as bytes.
FileReader = Callable[[str], bytes]
Severity = Literal["error", "warning"]


class CheckResult(BaseModel):
    """One rule of one consumer: passed or not, and why.

    A failed `warning` does not make a package fail (for example an account that could not be
    checked offline); a failed `error` does.
    """

    name: str
    passed: bool
    message: str
    severity: Severity = "error"

    @property
    def blocking(self) -> bool:
        """Whether this result makes the package fail."""
        return not self.passed and self.severity == "error"


def ok(name: str, message: str) -> CheckResult:
    return CheckResult(name=name, passed=True, message=message)


def fail(name: str, message: str, severity: Severity = "error") -> CheckResult:
    return CheckResult(name=name, passed=False, message=message, severity=severity)


def judged(name: str, problems: list[str], consequence: str, passed: str) -> CheckResult:
    """Fail with every problem and what it means for the user (`consequence`, appended), or pass
    with `passed`: the shape of most consumer rules."""
    if problems:
        return fail(name, "; ".join(problems) + consequence)
    return ok(name, passed)
