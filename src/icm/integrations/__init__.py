"""Harness hooks: icm inside other evaluation tools.

``lmms`` makes any lmms-eval task run at any icm operating point: a registered lmms-eval model
``icm`` codes every image of every request with real bitstreams before the inner model sees
it (:mod:`icm.integrations.lmms_model`, which needs the ``lmms`` extra), and ``icm lmms``
runs tasks x points resumably and writes rate-accuracy tables and plots
(:mod:`icm.integrations.lmms_run`). Everything here that does not import lmms-eval is
importable without it.
"""
