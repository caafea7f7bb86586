"""The report's plots, as PNG bytes: rate-fidelity curves and gap decompositions.

Every plot is drawn on a bare matplotlib Figure with the Agg canvas: no pyplot, so no global
backend is switched and nothing stays open between plots. PNG metadata leaves out the
matplotlib version, so the same ledger gives the same bytes on every machine.
"""

from __future__ import annotations

import io
from typing import Any

from icm.bench.analysis import CurvePoint, GapEntry

BPP_LABEL = "bits per pixel (every byte of the .icm file)"
_LOG_SPAN = 4.0  # a bpp range wider than this reads better on a log axis


def codec_colours(rows: list[dict[str, Any]]) -> dict[str, str]:
    """One colour per codec, the same in every plot of the report."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    codecs = sorted({row["codec"] for row in rows})
    return {codec: _hex(palette[i % len(palette)]) for i, codec in enumerate(codecs)}


def _hex(rgb) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb[:3])


def curve_plot(
    per_codec: dict[str, list[CurvePoint]],
    title: str,
    ylabel: str,
    anchor: str,
    colours: dict[str, str],
    *,
    psnr: bool = False,
    reference: float | None = None,
) -> bytes:
    """One line with markers per codec (mean PSNR when ``psnr``, else mean fidelity); the
    anchor dashed; log bpp axis when the span is wide; ``reference`` (the score on the
    pristine images) a dotted level line."""
    axes = _blank_axes()
    if reference is not None:
        axes.axhline(reference, color="0.4", linestyle=":", linewidth=1.2,
                     label="pristine images")
    ordered = sorted(per_codec, key=lambda c: (c != anchor, c))
    for codec in ordered:
        points = per_codec[codec]
        ys = [p.psnr if psnr else p.fidelity for p in points]
        axes.plot(
            [p.bpp for p in points],
            ys,
            marker="o",
            markersize=4.5,
            linewidth=1.6,
            linestyle="--" if codec == anchor else "-",
            color=colours.get(codec),
            label=f"{codec} (anchor)" if codec == anchor else codec,
        )
    rates = [p.bpp for points in per_codec.values() for p in points]
    if rates and max(rates) > _LOG_SPAN * min(rates):
        _log_bpp_axis(axes, rates)
    axes.set_xlabel(BPP_LABEL)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    if per_codec:
        axes.legend(loc="lower right", frameon=False)
    return _png(axes)


def gap_plot(entries: list[GapEntry], title: str, colours: dict[str, str]) -> bytes:
    """Per codec: total gap (solid) and information gap (dashed) against bpp; the band
    between them is the generalization gap."""
    axes = _blank_axes()
    for curve in dict.fromkeys(e.curve for e in entries):
        mine = sorted((e for e in entries if e.curve == curve), key=lambda e: e.bpp)
        rates = [e.bpp for e in mine]
        colour = colours.get(curve)
        axes.plot(rates, [e.total for e in mine], marker="o", color=colour,
                  label=f"{curve} total")
        axes.plot(rates, [e.information for e in mine], marker="s", linestyle="--",
                  color=colour, label=f"{curve} information")
        axes.fill_between(rates, [e.information for e in mine], [e.total for e in mine],
                          color=colour, alpha=0.15)
        if all(e.reference is not None for e in mine):
            axes.plot(rates, [e.reference for e in mine], linestyle=":", color=colour,
                      label=f"{curve} information (fine-tuned reference)")
    _log_bpp_axis(axes, [e.bpp for e in entries])
    axes.set_xlabel(BPP_LABEL)
    axes.set_ylabel("gap (1 - fidelity)")
    axes.set_title(title[:90], fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(frameon=False, fontsize=8)
    return _png(axes)


def _blank_axes():
    """The axes of a new figure of the report's one plot size, on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.2, 4.6), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure.add_subplot()


def _log_bpp_axis(axes, rates: list[float]) -> None:
    """A log bpp axis labelled with plain numbers (0.2, 0.5, 1), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.set_xscale("log")
    axes.xaxis.set_major_locator(LogLocator(subs=_log_ticks(max(rates) / min(rates))))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())


def _log_ticks(span: float) -> tuple[float, ...]:
    """Labelled ticks per decade: enough to read a value off a narrow range, few on a wide one."""
    if span < 10:
        return (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)
    return (1.0, 2.0, 5.0) if span < 100 else (1.0,)


def _png(axes) -> bytes:
    buffer = io.BytesIO()
    axes.figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
