"""Convolution building blocks shared by the 2D and 3D halves of every SparseSSP network.

Each block takes `dims` (2 or 3) so one definition serves both halves of a hybrid network; the
per-dimension torch classes are looked up once, at construction. The task embedding decides which
convolution and normalisation a residual block uses (see `embeddings`).
"""

from torch import Tensor, nn

from sparsessp_bmz.nets.embeddings import (
    CONV,
    NORM,
    MoDEConv,
    ModulatedNorm,
    TaskConditioned,
    TaskSequential,
)
from sparsessp_bmz.nets.geometry import Embedding

_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}

Scale = tuple[int, ...]


def conv(dims: int, in_ch: int, out_ch: int, kernel: int = 1) -> nn.Module:
    """A padded convolution that keeps the spatial size."""
    return CONV[dims](in_ch, out_ch, kernel_size=kernel, padding=kernel // 2)


class ResidualBlock(TaskConditioned):
    """Two 3x3(x3) conv-BN layers with an identity (or 1x1 projected) shortcut, then ReLU.

    The residual form is the paper's baseline UNet layer (section 3.3); BatchNorm matches the
    RepMode/DoDNet baselines. With RepMode the two convolutions are task-gated expert mixtures;
    with TSNs each batch norm is followed by a task-chosen affine.
    """

    def __init__(
        self, dims: int, in_ch: int, out_ch: int, embedding: Embedding = "none", num_tasks: int = 0
    ) -> None:
        super().__init__()
        self.body = TaskSequential(
            _main_conv(dims, in_ch, out_ch, embedding, num_tasks),
            _main_norm(dims, out_ch, embedding, num_tasks),
            nn.ReLU(inplace=True),
            _main_conv(dims, out_ch, out_ch, embedding, num_tasks),
            _main_norm(dims, out_ch, embedding, num_tasks),
        )
        self.shortcut = (
            nn.Identity()
            if in_ch == out_ch
            else nn.Sequential(conv(dims, in_ch, out_ch, 1), NORM[dims](out_ch))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, code: Tensor | None = None) -> Tensor:
        return self.act(self.body(x, code) + self.shortcut(x))


def _main_conv(dims: int, in_ch: int, out_ch: int, embedding: Embedding, tasks: int) -> nn.Module:
    if embedding == "repmode":
        return MoDEConv(dims, in_ch, out_ch, tasks)
    return conv(dims, in_ch, out_ch, 3)


def _main_norm(dims: int, channels: int, embedding: Embedding, tasks: int) -> nn.Module:
    if embedding == "tsns":
        return ModulatedNorm(dims, channels, tasks)
    return NORM[dims](channels)


def downsample(dims: int, scale: Scale) -> nn.Module:
    """Max pooling by `scale` (z may be 1 where the grid is too shallow to halve)."""
    return _POOL[dims](kernel_size=scale, stride=scale)


def upsample(dims: int, in_ch: int, out_ch: int, scale: Scale) -> nn.Module:
    """Learnable non-overlapping transposed convolution, the mirror of `downsample`."""
    return _CONV_T[dims](in_ch, out_ch, kernel_size=scale, stride=scale)
