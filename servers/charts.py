"""Server-rendered charts: pure functions that turn numbers into SVG coordinates (no charting JS)."""

from __future__ import annotations

from collections.abc import Sequence


def svg_points(
    values: Sequence[float],
    *,
    width: float = 100.0,
    height: float = 30.0,
    vmax: float | None = None,
    xs: Sequence[float] | None = None,
    x_range: tuple[float, float] | None = None,
) -> str:
    """`points` for an SVG <polyline> in a `0 0 width height` viewBox: y grows downwards, so the
    largest value (vmax, by default the largest of the values) is at the top. `xs` places the
    points along the x axis (any unit; by default evenly spaced), and `x_range` is the stretch of
    that axis the width shows (by default from the first to the last x).
    """
    if not values:
        return ""
    top = vmax if vmax is not None else max(values)
    top = top if top > 0 else 1.0
    if xs is None:
        xs = list(range(len(values)))
    x0, x1 = x_range if x_range is not None else (xs[0], xs[-1])
    span = (x1 - x0) or 1.0
    points = []
    for x, value in zip(xs, values, strict=True):
        px = width * (x - x0) / span if len(values) > 1 or x_range else width
        py = height - height * min(max(value, 0.0), top) / top
        points.append(f"{px:.2f},{py:.2f}")
    return " ".join(points)


def svg_area(points: str, *, height: float = 30.0) -> str:
    """A closed polygon under a polyline from svg_points, for a filled area chart."""
    if not points:
        return ""
    first_x = points.split(" ", 1)[0].split(",")[0]
    last_x = points.rsplit(" ", 1)[-1].split(",")[0]
    return f"{first_x},{height:.2f} {points} {last_x},{height:.2f}"
