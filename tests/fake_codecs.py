"""A codec for bench tests, registered like any plugin: ``fake-dying-jpeg`` is JPEG whose worker
process kills itself the first time it encodes while a marker file exists (to test a coding
worker dying mid-run). Imported only by the tests that need it, so codec listings stay real."""

from __future__ import annotations

from fake_machines import die_once
from icm.codecs.jpeg import JpegCodec
from icm.codecs.registry import register_codec


@register_codec
class DyingJpegCodec(JpegCodec):
    name = "fake-dying-jpeg"
    summary = "JPEG that kills its worker once while a marker exists (tests only)"

    def _encode(self, rgb, value, options):
        die_once("ICM_FAKE_CODEC_DIE_MARKER")
        return super()._encode(rgb, value, options)
