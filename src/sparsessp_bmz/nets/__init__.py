"""SparseSSP networks.

The modules of this package import torch and the standard library only (and each other), because
a bioimage.io package ships them, bundled into one file by `sparsessp_bmz.bmz.netsource`, to
rebuild its network where this project is not installed. Its architecture callable is
`variants.build_package_net`; `build_net_from_fields` is the same for the standard variant and
stays for packages that name this module.

torch is imported on first use of a network name, not by `import sparsessp_bmz.nets`: the
description classes (`sparsessp_bmz.spec`) import `nets.geometry`, and must stay cheap to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparsessp_bmz.nets.geometry import GeometryMixin
    from sparsessp_bmz.nets.network import SparseSSPNet
    from sparsessp_bmz.nets.variants import build_package_net

__all__ = ["SparseSSPNet", "build_net", "build_net_from_fields", "build_package_net"]

_LAZY = {"SparseSSPNet": "network", "build_package_net": "variants"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_net(spec: GeometryMixin) -> SparseSSPNet:
    """The network described by `spec` (a ModelSpec or NetGeometry), freshly initialised."""
    from sparsessp_bmz.nets.network import SparseSSPNet

    return SparseSSPNet(spec)


def build_net_from_fields(**fields: Any) -> SparseSSPNet:
    """The network a standard bioimage.io package ships, from plain keyword arguments.

    Multi-task descriptions give the task-free network baked for `organelle`, whose state dict is
    what the package stores. Same as `build_package_net("standard", **fields)`.
    """
    from sparsessp_bmz.nets.variants import build_package_net

    return build_package_net("standard", **fields)  # type: ignore[return-value]
