"""The coding pipeline: a point names what to do, its recipe prepares the image, its codec codes
it, and the bytes go to memory or to a file.

The modules, each depending only on the ones before it (and on the layers below the pipeline:
codecs, container, importance, machines, image, metrics):

``point``
    the point grammar: :class:`Tool`, :class:`CodecPoint`, :func:`parse_point`.
``recipe``
    a point's tools made runnable (:class:`Recipe`, cached by :func:`recipe_for`), the tools
    the ``--for`` flags add (:func:`machine_tools`), and a grid's points checked before any
    work (:func:`parse_points`).
``coding``
    arrays and bytes in memory: :func:`encode_image`, :func:`decode_bytes`, :class:`Coded`.
``files``
    files: :func:`encode_file`, :func:`decode_file`, :func:`describe_file`, :func:`read_coded`.

Codecs sit below the pipeline and never import it; the bench and the command line sit above.
"""

from icm.pipeline.coding import Coded, Encoded, decode_bytes, encode_image
from icm.pipeline.files import (
    ICM_SUFFIX,
    DecodeResult,
    EncodeResult,
    decode_file,
    describe_file,
    encode_file,
    read_coded,
    standard_output,
)
from icm.pipeline.point import CodecPoint, RecipeError, Tool, parse_point
from icm.pipeline.recipe import Prepared, Recipe, machine_tools, parse_points, recipe_for

__all__ = [
    "ICM_SUFFIX",
    "CodecPoint",
    "Coded",
    "DecodeResult",
    "EncodeResult",
    "Encoded",
    "Prepared",
    "Recipe",
    "RecipeError",
    "Tool",
    "decode_bytes",
    "decode_file",
    "describe_file",
    "encode_file",
    "encode_image",
    "machine_tools",
    "parse_point",
    "parse_points",
    "read_coded",
    "recipe_for",
    "standard_output",
]
