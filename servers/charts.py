"""Small server-rendered charts (SVG sparklines): no charting JavaScript.

Used by the servers dashboard and the System page.
"""

from __future__ import annotations

from collections.abc import Sequence


def sparkline_points(
    values: Sequence[float | None], width: float, height: float, *, maximum: float | None = None, pad: float = 1.0
) -> str:
    """The `points` attribute of an SVG <polyline> drawing `values` left to right in a
    width x height box (y grows downwards, so bigger values are drawn higher).

    `maximum` fixes the top of the scale (e.g. 100 for a percentage); by default it is the largest
    value. None values are skipped. Fewer than two values draw a flat line (or nothing at all).
    """
    known = [(i, float(v)) for i, v in enumerate(values) if v is not None]
    if not known:
        return ""
    if len(known) == 1:
        y = _y(known[0][1], 0.0, maximum or known[0][1] or 1.0, height, pad)
        return f"0,{y:.1f} {width:.1f},{y:.1f}"
    top = maximum if maximum is not None else max(v for _, v in known)
    bottom = min(0.0, min(v for _, v in known))
    span = max(len(values) - 1, 1)
    return " ".join(f"{i * width / span:.1f},{_y(v, bottom, top, height, pad):.1f}" for i, v in known)


def _y(value: float, bottom: float, top: float, height: float, pad: float) -> float:
    if top <= bottom:
        return height - pad
    ratio = min(max((value - bottom) / (top - bottom), 0.0), 1.0)
    return pad + (1.0 - ratio) * (height - 2 * pad)
