"""A differentiable stand-in for a block-transform codec: what the editor trains through.

The real encoders (libjpeg, kvazaar, vvenc) are not differentiable, so training codes each
crop with a proxy that does what they do to the pixels that matters for rate and for the
machine: JFIF YCbCr, 4:2:0 chroma (both JPEG's default here and the video codecs' format),
the orthonormal 8x8 DCT, and uniform quantisation by the level's steps (JPEG's tables; the
video codecs' flat ``2 ** ((QP - 4) / 6)``). Rounding is straight-through: the forward pass
is exactly the rounded coefficients, the backward pass the identity.

**Rate.** ``sum log2(1 + |level|)`` over the quantised coefficients, per pixel. Through the
straight-through rounding its gradient reaches only coefficients that survive quantisation,
pushing the smallest of them towards zero, which is where a block-transform coder's bits go
(zero runs and end-of-block codes cost almost nothing). What the proxy leaves out (JPEG's DC
prediction and Huffman tables; the video codecs' intra prediction, larger transforms,
deblocking and CABAC) changes the scale more than the order: ``benchmarks/preedit.py``
measures the rank correlation of proxy and real bits over photos and levels (0.99 over
Kodak x ten levels for JPEG, HEVC and VVC) and the scale (real bits are 3.4x the proxy's
for JPEG, whose Huffman codes and DC are coded less tightly, 1.6-1.7x for HEVC and VVC).
The proxy stays in its own units: training weighs the machine term by the codec's slope
measured with the same proxy (``icm.preedit.train``), so a rate scale would change the rate
and the machine terms alike, leaving only the small pixel term's share to move.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

#: JFIF's RGB -> YCbCr (libjpeg's matrix); Cb and Cr are centred on 0 here
_RGB_TO_YCC = torch.tensor([[0.299, 0.587, 0.114],
                            [-0.168736, -0.331264, 0.5],
                            [0.5, -0.418688, -0.081312]])
_YCC_TO_RGB = torch.linalg.inv(_RGB_TO_YCC)


def dct_matrix(size: int = 8) -> torch.Tensor:
    """The orthonormal DCT-II matrix: ``D @ x`` transforms a column."""
    n = torch.arange(size, dtype=torch.float64)
    k = n[:, None]
    matrix = torch.cos(math.pi * (2 * n[None, :] + 1) * k / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix.float()


_DCT = dct_matrix()


def round_straight_through(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, the identity backward."""
    return x + (torch.round(x) - x).detach()


def to_blocks(plane: torch.Tensor) -> torch.Tensor:
    """(B, H, W) with H, W multiples of 8 -> (B, H/8, W/8, 8, 8)."""
    b, h, w = plane.shape
    return plane.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def from_blocks(blocks: torch.Tensor) -> torch.Tensor:
    b, rows, cols = blocks.shape[:3]
    return blocks.permute(0, 1, 3, 2, 4).reshape(b, rows * 8, cols * 8)


class CodecProxy:
    """Codes a batch of RGB crops in [0, 1] (B, 3, H, W; H and W multiples of 16) at given
    quantiser tables: :meth:`__call__` gives the decoded crops and each crop's proxy bits per
    pixel, both differentiable in the input."""

    def __call__(self, rgb: torch.Tensor, tables: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``tables`` (B, 2, 8, 8): luma and chroma steps per crop (the family's steps,
        :func:`icm.preedit.config.step_tables`)."""
        batch, _, height, width = rgb.shape
        ycc = torch.einsum("ij,bjhw->bihw", _RGB_TO_YCC.to(rgb), rgb * 255.0)
        luma = ycc[:, 0] - 128.0
        chroma = F.avg_pool2d(ycc[:, 1:], 2)
        bits = torch.zeros(batch, dtype=rgb.dtype, device=rgb.device)
        planes = []
        for index, plane in enumerate((luma, chroma[:, 0], chroma[:, 1])):
            table = tables[:, 0 if index == 0 else 1][:, None, None]
            coefficients = _DCT.to(rgb) @ to_blocks(plane) @ _DCT.T.to(rgb)
            levels = round_straight_through(coefficients / table)
            bits = bits + torch.log2(1.0 + levels.abs()).sum(dim=(1, 2, 3, 4))
            planes.append(from_blocks(_DCT.T.to(rgb) @ (levels * table) @ _DCT.to(rgb)))
        chroma_hat = F.interpolate(torch.stack(planes[1:], 1), scale_factor=2, mode="nearest")
        ycc_hat = torch.cat([(planes[0] + 128.0)[:, None], chroma_hat], 1)
        decoded = torch.einsum("ij,bjhw->bihw", _YCC_TO_RGB.to(rgb), ycc_hat) / 255.0
        bpp = bits / (height * width)
        # clamped as a decoder clamps, with the gradient of the unclamped pixels kept
        return decoded + (decoded.clamp(0.0, 1.0) - decoded).detach(), bpp
