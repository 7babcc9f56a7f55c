"""Convolution building blocks shared by the 2D and 3D halves of every SparseSSP network.

Each block takes `dims` (2 or 3) so one definition serves both halves of a hybrid network; the
per-dimension torch classes are looked up once, at construction.
"""

from __future__ import annotations

from torch import Tensor, nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}

Scale = tuple[int, ...]


def conv(dims: int, in_ch: int, out_ch: int, kernel: int = 1) -> nn.Module:
    """A padded convolution that keeps the spatial size."""
    return _CONV[dims](in_ch, out_ch, kernel_size=kernel, padding=kernel // 2)


class ResidualBlock(nn.Module):
    """Two 3x3(x3) conv-BN layers with an identity (or 1x1 projected) shortcut, then ReLU.

    The residual form is the paper's baseline UNet layer (section 3.3); BatchNorm matches the
    RepMode/DoDNet baselines and folds into the convolutions at export time if ever needed.
    """

    def __init__(self, dims: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        norm = _NORM[dims]
        self.body = nn.Sequential(
            conv(dims, in_ch, out_ch, 3),
            norm(out_ch),
            nn.ReLU(inplace=True),
            conv(dims, out_ch, out_ch, 3),
            norm(out_ch),
        )
        self.shortcut = (
            nn.Identity()
            if in_ch == out_ch
            else nn.Sequential(conv(dims, in_ch, out_ch, 1), norm(out_ch))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def downsample(dims: int, scale: Scale) -> nn.Module:
    """Max pooling by `scale` (z may be 1 where the grid is too shallow to halve)."""
    return _POOL[dims](kernel_size=scale, stride=scale)


def upsample(dims: int, in_ch: int, out_ch: int, scale: Scale) -> nn.Module:
    """Learnable non-overlapping transposed convolution, the mirror of `downsample`."""
    return _CONV_T[dims](in_ch, out_ch, kernel_size=scale, stride=scale)
