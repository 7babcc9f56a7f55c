"""Which consumer software accepts a package, and why not.

`static_verdicts` reads the raw YAML and the package files only (no bioimageio.core test run), so
export can write the consumer table of a model card before validating. The rules of each app live
in its own module (`deepimagej.py`, `ilastik.py`, `qupath.py`), each exposing
`run_checks(rdf, read) -> list[CheckResult]`; they are imported by name, lazily, so a consumer
whose module is absent is left out rather than breaking validation.

The verdicts of bioimageio.core (and napari, which runs packages through it) come from the
`test_model` runs in `validate.py`.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel

from sparsessp_bmz.bmz.checks import CheckResult, FileReader, fail

#: Consumer name -> module with its `run_checks(rdf, read)`, in report order.
STATIC_CONSUMERS = {
    "deepImageJ": "sparsessp_bmz.bmz.deepimagej",
    "ilastik": "sparsessp_bmz.bmz.ilastik",
    "QuPath": "sparsessp_bmz.bmz.qupath",
}


class ConsumerVerdict(BaseModel):
    """One consumer's verdict: accepted unless a blocking (error) check failed."""

    name: str
    accepted: bool
    checks: list[CheckResult] = []

    @classmethod
    def from_checks(cls, name: str, checks: list[CheckResult]) -> ConsumerVerdict:
        return cls(name=name, accepted=not any(c.blocking for c in checks), checks=checks)

    @property
    def refusals(self) -> list[CheckResult]:
        """The checks that make this consumer refuse the package."""
        return [c for c in self.checks if c.blocking]

    @property
    def reason(self) -> str:
        """Why it refuses (`name: message; ...`), or how many checks passed."""
        if self.refusals:
            return "; ".join(f"{c.name}: {c.message}" for c in self.refusals)
        warnings = [c for c in self.checks if not c.passed]
        text = f"{sum(c.passed for c in self.checks)}/{len(self.checks)} checks pass"
        if warnings:
            text += " (warnings: " + "; ".join(f"{c.name}: {c.message}" for c in warnings) + ")"
        return text


def _run(name: str, module_name: str, rdf: dict[str, Any], read: FileReader) -> list[CheckResult]:
    module = importlib.import_module(module_name)
    try:
        return list(module.run_checks(rdf, read))
    except Exception as err:  # a consumer's checks crashing on a strange RDF is a refusal
        return [fail(f"{name}_checks", f"the checks crashed: {type(err).__name__}: {err}")]


def static_verdicts(rdf: dict[str, Any], read: FileReader) -> list[ConsumerVerdict]:
    """deepImageJ, ilastik and QuPath verdicts from the RDF and package files alone."""
    verdicts = []
    for name, module_name in STATIC_CONSUMERS.items():
        try:
            checks = _run(name, module_name, rdf, read)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        verdicts.append(ConsumerVerdict.from_checks(name, checks))
    return verdicts
