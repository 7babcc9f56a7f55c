"""SparseSSP networks.

Imports torch and pydantic only (both present wherever bioimageio.core runs), so a bioimage.io
`pytorch_state_dict` package can name `build_net_from_fields` as its architecture.
"""

from typing import Any

from sparsessp_bmz.nets.network import SparseSSPNet
from sparsessp_bmz.spec import ModelSpec

__all__ = ["SparseSSPNet", "build_net", "build_net_from_fields"]


def build_net(spec: ModelSpec) -> SparseSSPNet:
    """The network described by `spec`, freshly initialised."""
    return SparseSSPNet(spec)


def build_net_from_fields(**fields: Any) -> SparseSSPNet:
    """The network a bioimage.io package ships, from plain keyword arguments (its architecture).

    Multi-task descriptions give the task-free network baked for `organelle`, whose state dict is
    what the package stores.
    """
    net = SparseSSPNet(ModelSpec(**fields))
    return net.baked() if net.conditioned else net
