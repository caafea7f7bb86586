"""Metrics: how good a decoded image is, and how two codecs' rate-quality curves compare.

``quality`` scores one decoded image against its original (PSNR, SSIM, MS-SSIM);
``noreference`` scores it alone (BRISQUE, the ``quality`` extra, imported on use); ``bd`` turns
two sets of (rate, score) points into one Bjøntegaard delta (BD-rate, BD-PSNR or any BD-metric).
"""

from icm.metrics.bd import BD_METHODS, BDWarning, bd_metric, bd_rate
from icm.metrics.quality import ms_ssim, psnr, ssim

__all__ = ["BD_METHODS", "BDWarning", "bd_metric", "bd_rate", "ms_ssim", "psnr", "ssim"]
