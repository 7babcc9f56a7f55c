"""Which parts of a package would run the package's own code, and whether that code is ours.

bioimageio.core's `test_model` imports and calls a `pytorch_state_dict` architecture: from a file
shipped in the package (`source` + `callable`), or from any importable module (`import_from:
os, callable: system` runs a shell command). A `custom` pre/postprocessing op imports a shipped
file for every weight format. Keras and TensorFlow weights can carry code too (Lambda layers,
graph ops with side effects). `validate` therefore runs those only with the user's consent
(`--trust-code`), and tests the rest (TorchScript and ONNX, which their runtimes load as data).

A package of this project is recognised strictly, so that it is tested fully without consent:
its state dict's architecture is exactly `source: sparsessp_net.py`, `callable:
build_package_net` (nothing imported from a library), and the shipped file is byte for byte what
this installed sparsessp-bmz generates (`netsource.network_source()`). A copy edited by anyone,
another version's file or a library architecture is foreign.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sparsessp_bmz.bmz.checks import FileReader
from sparsessp_bmz.bmz.netsource import ARCHITECTURE_CALLABLE, SHIPPED_FILE, network_source

#: Weight formats whose runtime loads them as data (no Python from the package runs).
DATA_FORMATS = frozenset({"torchscript", "onnx"})
STATE_DICT = "pytorch_state_dict"
#: Pre/postprocessing ops bioimageio.core implements itself (or with a fixed library it imports
#: by its own name): none of them imports a file or module the package names.
BUILTIN_PROCESSING = frozenset(
    {
        "binarize",
        "clip",
        "ensure_dtype",
        "fixed_zero_mean_unit_variance",
        "scale_linear",
        "scale_mean_variance",
        "scale_range",
        "sigmoid",
        "softmax",
        "zero_mean_unit_variance",
        "stardist_postprocessing",
        "cellpose_flow_dynamics",
    }
)
#: What the report says of a format it did not run.
SKIPPED = "skipped"
CONSENT = "pass --trust-code to run it"


@lru_cache(maxsize=1)
def _our_source() -> bytes:
    return network_source().encode("utf-8")


def _processing_ops(rdf: dict[str, Any]) -> list[str]:
    """Ids of every pre/postprocessing op of every tensor (format 0.5 `id`, 0.4 `name`)."""
    ops = []
    for kind, key in (("inputs", "preprocessing"), ("outputs", "postprocessing")):
        tensors = rdf.get(kind)
        for tensor in tensors if isinstance(tensors, list) else []:
            steps = tensor.get(key) if isinstance(tensor, dict) else None
            for step in steps if isinstance(steps, list) else []:
                op = (step.get("id") or step.get("name")) if isinstance(step, dict) else step
                ops.append(str(op))
    return ops


def package_code(rdf: dict[str, Any]) -> str | None:
    """Why every weight format's test would run package code (a custom processing op), or None."""
    foreign = sorted({op for op in _processing_ops(rdf) if op not in BUILTIN_PROCESSING})
    if foreign:
        return f"its pre/postprocessing {', '.join(foreign)} imports code the package names"
    return None


def is_our_architecture(entry: Any, read: FileReader) -> bool:
    """Whether a state-dict weights entry is this project's shipped network, unmodified."""
    architecture = entry.get("architecture") if isinstance(entry, dict) else None
    if not isinstance(architecture, dict) or "import_from" in architecture:
        return False
    if architecture.get("source") != SHIPPED_FILE:
        return False
    if architecture.get("callable") != ARCHITECTURE_CALLABLE:
        return False
    try:
        shipped = read(SHIPPED_FILE)
    except Exception:  # absent or unreadable: not ours (bioimageio.core would fail anyway)
        return False
    return shipped == _our_source()


def _state_dict_reason(entry: Any, read: FileReader) -> str:
    architecture = entry.get("architecture") if isinstance(entry, dict) else None
    if isinstance(architecture, dict) and "import_from" in architecture:
        name = f"{architecture.get('import_from')}.{architecture.get('callable')}"
        return f"its architecture imports {name}"
    if (
        isinstance(architecture, dict)
        and architecture.get("source") == SHIPPED_FILE
        and architecture.get("callable") == ARCHITECTURE_CALLABLE
    ):
        return (
            f"its {SHIPPED_FILE} is not the network source this sparsessp-bmz generates "
            "(edited, or from another version)"
        )
    if isinstance(architecture, dict):
        return f"its architecture runs {architecture.get('source')}:{architecture.get('callable')}"
    return f"its architecture {architecture!r} is code from the package"


def untrusted_formats(rdf: dict[str, Any], read: FileReader) -> dict[str, str]:
    """Weight format -> why testing it would run code from the package; formats not listed are
    safe to test without consent."""
    weights = rdf.get("weights")
    formats = [fmt for fmt, entry in weights.items() if entry] if isinstance(weights, dict) else []
    everywhere = package_code(rdf)
    reasons: dict[str, str] = {}
    for fmt in formats:
        if everywhere is not None:
            reasons[fmt] = everywhere
        elif fmt == STATE_DICT:
            if not is_our_architecture(weights[fmt], read):
                reasons[fmt] = _state_dict_reason(weights[fmt], read)
        elif fmt not in DATA_FORMATS:
            reasons[fmt] = f"{fmt} weights can carry code that loading them runs"
    return reasons


def skip_message(reason: str) -> str:
    """The report's line for a format not run: what it would run, and how to consent."""
    return f"untrusted code ({reason}); {CONSENT}"
