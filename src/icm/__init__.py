"""icm: image coding for machines.

Compress an image for the model that will read it, and measure honestly how much a codec at a
given bitrate hurts that model. The packages follow one data path: ``image`` loads safely,
``codecs`` turns pixels into real bitstreams, ``container`` wraps them with side information,
``metrics`` scores the result, and ``cli`` is a thin shell over all of it.
"""

__version__ = "0.1.0"
