"""Small server-rendered charts (SVG sparklines): no charting JavaScript.

Used by the servers dashboard and the System page.
"""

from __future__ import annotations

from collections.abc import Sequence


def sparkline_points(
    values: Sequence[float | None],
    width: float,
    height: float,
    *,
    maximum: float | None = None,
    pad: float = 1.0,
    xs: Sequence[float] | None = None,
    x_range: tuple[float, float] | None = None,
) -> str:
    """The `points` attribute of an SVG <polyline> drawing `values` left to right in a
    width x height box (y grows downwards, so bigger values are drawn higher).

    `maximum` fixes the top of the scale (e.g. 100 for a percentage); by default it is the largest
    value. None values are skipped. Fewer than two values draw a flat line (or nothing at all).
    `xs` places the values along the x axis by a coordinate of their own (a timestamp, so a pause
    in sampling keeps its width) instead of evenly, and `x_range` is the stretch of that axis the
    width shows (by default from the first to the last x).
    """
    known = [(i, float(v)) for i, v in enumerate(values) if v is not None]
    if not known:
        return ""
    if len(known) == 1 and xs is None:
        top = maximum or known[0][1] or 1.0
        y = pad + (1.0 - min(max(known[0][1] / top, 0.0), 1.0)) * (height - 2 * pad)
        return f"0,{y:.1f} {width:.1f},{y:.1f}"
    top = maximum if maximum is not None else max(v for _, v in known)
    bottom = min(0.0, min(v for _, v in known))
    if top <= bottom:
        top = bottom + 1.0
    scale = (height - 2 * pad) / (top - bottom)
    where = list(xs) if xs is not None else list(range(len(values)))
    x0, x1 = x_range if x_range is not None else (where[0], where[-1])
    step = width / ((x1 - x0) or 1)
    # y grows downwards: the top of the scale is drawn at `pad`, the bottom at `height - pad`.
    base = pad + top * scale
    return " ".join([f"{(where[i] - x0) * step:.1f},{base - (top if v > top else v) * scale:.1f}" for i, v in known])
