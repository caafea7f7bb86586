"""Entropy coding of our codec's latents with constriction's rANS coder.

Why a fixed scale table: the decoder recomputes each latent's Gaussian from the decoded
hyper-latent, and a CDF built from a float scale would differ between encoder and decoder at
the last bit whenever their arithmetic does (another thread count, another CPU), which corrupts
everything after it. So scales are snapped up to the nearest of 64 log-spaced table entries
(CompressAI's table: 0.11 .. 256) and only the entry's index decides the CDF, which constriction
then builds from the same float64 number on both sides. Means are subtracted before rounding,
so every symbol is coded under a zero-mean Gaussian.

Symbols outside ``[-SYMBOL_RANGE, SYMBOL_RANGE]`` are clipped (a latent that far out has never
been seen in training; clipping costs a little distortion, never a broken stream).
constriction's quantised Gaussian gives every symbol in range a non-zero probability, so any
symbol in range codes, however unlikely.
"""

from __future__ import annotations

import numpy as np
import torch

from icm.learned.network import SCALE_BOUND

SCALE_TABLE = np.exp(np.linspace(np.log(SCALE_BOUND), np.log(256.0), 64))
SYMBOL_RANGE = 1023
_TABLE32 = torch.tensor(SCALE_TABLE, dtype=torch.float32)


def scale_indexes(scales: torch.Tensor) -> np.ndarray:
    """Index of the smallest table entry >= each scale (the last entry for larger ones)."""
    index = torch.bucketize(scales.detach().float().contiguous(), _TABLE32)
    return index.clamp_(max=len(SCALE_TABLE) - 1).numpy().astype(np.int64).ravel()


def to_symbols(values: torch.Tensor) -> np.ndarray:
    """Rounded, clipped integer symbols (flattened) of mean-removed latents."""
    rounded = torch.round(values.detach()).clamp_(-SYMBOL_RANGE, SYMBOL_RANGE)
    return rounded.numpy().astype(np.int32).ravel()


def _model():
    import constriction

    return constriction.stream.model.QuantizedGaussian(-SYMBOL_RANGE, SYMBOL_RANGE)


def encode(streams: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Code ``(symbols, scale indexes)`` pairs into one rANS stream, decodable in this order."""
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    model = _model()
    for symbols, indexes in reversed(streams):  # a stack: the last pushed is the first popped
        stds = SCALE_TABLE[indexes]
        coder.encode_reverse(symbols.astype(np.int32), model, np.zeros_like(stds), stds)
    return coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """Pops symbol arrays off a stream in the order :func:`encode` was given them."""

    def __init__(self, data: bytes) -> None:
        import constriction

        if len(data) % 4:
            raise ValueError("entropy-coded data is not a whole number of 32-bit words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._coder = constriction.stream.stack.AnsCoder(words)
        self._model = _model()

    def decode(self, indexes: np.ndarray) -> np.ndarray:
        stds = SCALE_TABLE[indexes]
        return np.asarray(self._coder.decode(self._model, np.zeros_like(stds), stds), np.int32)

    def decode_last(self, indexes: np.ndarray) -> np.ndarray:
        """:meth:`decode` for the stream's last symbols, checking that the stream ends exactly
        with them.

        A rANS stream that lost words still decodes (constriction reads an exhausted coder as
        zeros), so a cut stream would give a picture. But a whole one runs out of words with
        its very last symbol, not before and not after: the coder must still hold bits before
        the last symbol and none after it."""
        if indexes.size == 0:
            return np.zeros(0, np.int32)
        head = self.decode(indexes[:-1])
        if self._coder.is_empty():
            raise ValueError("the stream ends before its last symbol (truncated)")
        last = self.decode(indexes[-1:])
        if not self._coder.is_empty():
            raise ValueError("bytes are left over after the last symbol")
        return np.concatenate([head, last])
