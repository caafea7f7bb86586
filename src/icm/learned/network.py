"""Our learned codec's network: a compact mean-scale hyperprior with gain units and a quality map.

Why this shape (Ballé et al. 2018, Minnen et al. 2018 without the autoregressive context, which
would make decoding serial and slow on a CPU): four stride-2 5x5 convolutions with simplified
GDN (Johnston et al. 2019: ``x / (beta + gamma * |x|)``, cheaper than GDN's square root and as
good) take the picture to ``M`` latent channels at 1/16 of its size; a hyper-analysis takes the
latent to ``z`` at 1/64, whose decoded value predicts each latent's mean and scale.

Variable rate from one model: gain units (Cui et al. 2021) scale each latent channel by a
learned gain before rounding and by a learned inverse gain after, one pair of vectors per
trained quality level; a quality between two levels interpolates their log-gains, so the level
is a continuous knob. Spatial rate: the quality is a map (one value per latent position, i.e.
per 16x16 block of pixels), so each block is quantised with its own gains, and the map is also
an input channel of the analysis and synthesis transforms (as in Song et al. 2021's
QmapCompression), which lets them adapt their features to the local quality. The decoder gets
the map from the bitstream.

Quantisation and entropy coding use the decoded hyper-latent only, so the encoder and decoder
compute the same means and scales; scales are snapped to a fixed table (:mod:`icm.learned.entropy`)
before they build a CDF.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

#: latent stride of the main and hyper transforms (pixels per latent / hyper-latent position)
LATENT_STRIDE = 16
HYPER_STRIDE = 4
#: the smallest scale a Gaussian may have (CompressAI's bound; also the first table entry)
SCALE_BOUND = 0.11


@dataclass(frozen=True)
class Architecture:
    """The sizes a saved model is rebuilt with (they travel in the file's metadata).

    ``lambdas`` are the rate-distortion trade-offs the quality levels were trained for, one per
    level, coarse to fine: level ``q`` (1-based, continuous) trains with ``lambdas`` interpolated
    geometrically.
    """

    channels: int = 64
    latent: int = 192
    hyper: int = 64
    lambdas: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)
    #: a linear block-transform path beside the nonlinear one (see :class:`BlockTransform`)
    block_path: bool = True

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    def to_json(self) -> dict:
        return {**asdict(self), "lambdas": list(self.lambdas)}

    @classmethod
    def from_json(cls, record: dict) -> Architecture:
        return cls(int(record["channels"]), int(record["latent"]), int(record["hyper"]),
                   tuple(float(v) for v in record["lambdas"]),
                   bool(record.get("block_path", False)))


class SimpleGDN(nn.Module):
    """``x / (beta + conv1x1(|x|, gamma))`` (or times, for the inverse), non-negative weights.

    Parameters are stored as square roots and squared on use, which keeps them non-negative
    without clipping away their gradients.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_root = nn.Parameter(torch.ones(channels))
        self.gamma_root = nn.Parameter(torch.eye(channels) * 0.1**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta_root.pow(2) + 1e-6
        gamma = self.gamma_root.pow(2)[:, :, None, None]
        norm = F.conv2d(x.abs(), gamma, beta)
        return x * norm if self.inverse else x / norm


class BlockTransform(nn.Module):
    """A learnable linear transform of 16x16 blocks, started as a JPEG-like DCT in YCbCr.

    Why: a nonlinear transform trained from scratch needs far more steps than a CPU gives to
    reconstruct even coarsely, while a block DCT with per-coefficient quantiser steps (our
    gains) and an adaptive entropy model is already a decent codec. The latent is the sum of
    this path and the nonlinear one, and so is the reconstruction: training starts from a
    working transform codec and the nonlinear path learns what a block DCT misses (blocking,
    the high frequencies it drops). ``analysis`` keeps the lowest frequencies in zigzag order:
    two thirds of the channels for luma, a sixth each for the two chroma planes.
    """

    def __init__(self, latent: int, scale: float = 8.0) -> None:
        super().__init__()
        basis = _dct_basis(LATENT_STRIDE)  # (256, 16, 16), lowest frequencies first
        luma = latent * 2 // 3
        counts = (luma, (latent - luma) // 2, latent - luma - (latent - luma) // 2)
        rgb_to_ycc = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                                   [0.5, -0.418688, -0.081312]])
        ycc_to_rgb = torch.linalg.inv(rgb_to_ycc)
        forward, inverse = [], []
        for component, count in enumerate(counts):
            for k in range(count):
                forward.append(rgb_to_ycc[component][:, None, None] * basis[k] * scale)
                inverse.append(ycc_to_rgb[:, component][:, None, None] * basis[k] / scale)
        self.analysis = nn.Conv2d(3, latent, LATENT_STRIDE, stride=LATENT_STRIDE, bias=False)
        self.synthesis = nn.ConvTranspose2d(latent, 3, LATENT_STRIDE, stride=LATENT_STRIDE,
                                            bias=False)
        with torch.no_grad():
            self.analysis.weight.copy_(torch.stack(forward))
            self.synthesis.weight.copy_(torch.stack(inverse))


def _dct_basis(size: int) -> torch.Tensor:
    """Orthonormal 2-D DCT-II basis images, ordered by frequency (u + v, then u)."""
    n = torch.arange(size, dtype=torch.float64)
    k = torch.arange(size, dtype=torch.float64)[:, None]
    one_d = torch.cos(torch.pi * (2 * n + 1) * k / (2 * size)) * (2 / size) ** 0.5
    one_d[0] /= 2**0.5
    order = sorted(((u, v) for u in range(size) for v in range(size)),
                   key=lambda uv: (uv[0] + uv[1], uv[0]))
    return torch.stack([torch.outer(one_d[u], one_d[v]) for u, v in order]).float()


def _conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def _deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2,
                              output_padding=stride - 1)


class LicNet(nn.Module):
    """The transforms, gains and hyper-latent prior; coding lives in :mod:`icm.learned.codec`.

    Images are ``(B, 3, H, W)`` floats in [0, 1] with ``H, W`` multiples of 16; quality maps
    are ``(B, 1, H/16, W/16)`` floats in ``[0, levels - 1]`` (0-based).
    """

    def __init__(self, arch: Architecture | None = None) -> None:
        super().__init__()
        self.arch = arch = arch or Architecture()
        n, m, h = arch.channels, arch.latent, arch.hyper
        self.g_a = nn.Sequential(
            _conv(4, n), SimpleGDN(n), _conv(n, n), SimpleGDN(n), _conv(n, n), SimpleGDN(n),
            _conv(n, m),
        )
        self.g_s = nn.Sequential(
            _deconv(m + 1, n), SimpleGDN(n, inverse=True), _deconv(n, n),
            SimpleGDN(n, inverse=True), _deconv(n, n), SimpleGDN(n, inverse=True), _deconv(n, 3),
        )
        self.h_a = nn.Sequential(
            _conv(m + 1, n, 3, 1), nn.LeakyReLU(inplace=True), _conv(n, n),
            nn.LeakyReLU(inplace=True), _conv(n, h),
        )
        self.h_s = nn.Sequential(
            _deconv(h, n), nn.LeakyReLU(inplace=True), _deconv(n, n * 3 // 2),
            nn.LeakyReLU(inplace=True), _conv(n * 3 // 2, 2 * m, 3, 1),
        )
        self.block = BlockTransform(m) if arch.block_path else None
        if self.block is not None:  # start as the block codec: the nonlinear paths add on
            for layer in (self.g_a[-1], self.g_s[-1]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        # Finer levels start with larger gains (a finer quantiser): about sqrt(2) per level,
        # the step ratio that doubles lambda at high rate. Training moves them from there.
        start = torch.arange(arch.levels, dtype=torch.float32) - (arch.levels - 1) / 2
        log_gain = (0.5 * torch.log(torch.tensor(2.0)) * start)[:, None].repeat(1, m)
        self.log_gain = nn.Parameter(log_gain.clone())
        self.log_inverse_gain = nn.Parameter(-log_gain.clone())
        # The hyper-latent's factorised prior: one Gaussian per channel (mean, log scale).
        self.z_mean = nn.Parameter(torch.zeros(h))
        self.z_log_scale = nn.Parameter(torch.zeros(h))

    # -- gains ----------------------------------------------------------------------------------
    def gains(self, qmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position gain and inverse gain ``(B, M, h, w)`` for a 0-based quality map."""
        top = self.arch.levels - 1
        q = qmap.clamp(0, top)
        low = q.floor().clamp(max=top - 1)
        frac = (q - low).movedim(1, -1)  # (B, h, w, 1)
        index = low.long()[:, 0]  # (B, h, w)

        def blend(table: torch.Tensor) -> torch.Tensor:
            mixed = table[index] * (1 - frac) + table[index + 1] * frac  # (B, h, w, M)
            return mixed.exp().movedim(-1, 1)

        return blend(self.log_gain), blend(self.log_inverse_gain)

    # -- the transforms -------------------------------------------------------------------------
    def analysis(self, x: torch.Tensor, qmap: torch.Tensor) -> torch.Tensor:
        """Image -> gained latent (before rounding)."""
        pixels_q = F.interpolate(qmap, scale_factor=LATENT_STRIDE, mode="nearest")
        y = self.g_a(torch.cat([x - 0.5, self._qchannel(pixels_q)], dim=1))
        if self.block is not None:
            y = y + self.block.analysis(x - 0.5)
        return y * self.gains(qmap)[0]

    def hyper_analysis(self, y: torch.Tensor, qmap: torch.Tensor) -> torch.Tensor:
        padded = _pad_to(torch.cat([y, self._qchannel(qmap)], dim=1), HYPER_STRIDE)
        return self.h_a(padded)

    def hyper_synthesis(self, z_hat: torch.Tensor, size: tuple[int, int]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded hyper-latent -> (means, scales) of the gained latent, cropped to ``size``."""
        params = self.h_s(z_hat)[:, :, : size[0], : size[1]]
        means, scales = params.chunk(2, dim=1)
        return means, F.softplus(scales).clamp_min(SCALE_BOUND)

    def synthesis(self, y_hat: torch.Tensor, qmap: torch.Tensor) -> torch.Tensor:
        """Decoded gained latent -> image in [0, 1] (not clamped: training needs the gradient)."""
        y = y_hat * self.gains(qmap)[1]
        x = self.g_s(torch.cat([y, self._qchannel(qmap)], dim=1)) + 0.5
        return x if self.block is None else x + self.block.synthesis(y)

    def _qchannel(self, qmap: torch.Tensor) -> torch.Tensor:
        return qmap / (self.arch.levels - 1) - 0.5

    # -- training -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, qmap: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: reconstruction and the bits each latent would cost.

        Rates are measured on noisy latents (additive uniform noise, the usual differentiable
        proxy), while the synthesis sees the rounded latent with a straight-through gradient,
        as the decoder will: this closes the train/test gap that noise alone leaves.
        """
        y = self.analysis(x, qmap)
        z = self.hyper_analysis(y, qmap)
        z_bits = self.z_bits(z + torch.empty_like(z).uniform_(-0.5, 0.5))
        z_hat = _round_ste(z - self._z_mean()) + self._z_mean()
        means, scales = self.hyper_synthesis(z_hat, y.shape[-2:])
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        y_bits = gaussian_bits(y_noisy - means, scales)
        y_hat = _round_ste(y - means) + means
        return {"x_hat": self.synthesis(y_hat, qmap), "y_bits": y_bits.sum(dim=(1, 2, 3)),
                "z_bits": z_bits.sum(dim=(1, 2, 3))}

    def z_bits(self, z: torch.Tensor) -> torch.Tensor:
        return gaussian_bits(z - self._z_mean(), self.z_scale()[None, :, None, None])

    def _z_mean(self) -> torch.Tensor:
        return self.z_mean[None, :, None, None]

    def z_scale(self) -> torch.Tensor:
        return self.z_log_scale.exp().clamp_min(SCALE_BOUND)


def gaussian_bits(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """-log2 of the probability of the unit bin around each value under N(0, scale)."""
    normal = torch.distributions.Normal(0.0, 1.0)
    upper = normal.cdf((0.5 - values.abs()) / scales)
    lower = normal.cdf((-0.5 - values.abs()) / scales)
    return -torch.log2((upper - lower).clamp_min(1e-9))


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not (pad_h or pad_w):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
