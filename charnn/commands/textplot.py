"""Charts drawn with characters, for terminals and logs (the pictures without a display):
`plot` one series, `chart` several with a marker each and an optional log scale."""

from __future__ import annotations

import math

MARKERS = "*o+x#@%&"


def plot(xs: list[float], ys: list[float], width: int = 60, height: int = 10) -> str:
    """A small text plot of ys against xs ("" when fewer than two finite points)."""
    return chart([("", xs, ys)], width, height, legend=False)


def chart(series: list[tuple[str, list[float], list[float]]], width: int = 60, height: int = 10,
          log_y: bool = False, legend: bool = True) -> str:
    """Several (label, xs, ys) series on one grid, each with its marker; log_y draws log10(y)
    (points at or below zero are left out) and labels the axis with powers of ten."""
    def keep(y) -> bool:
        return isinstance(y, (int, float)) and math.isfinite(y) and (y > 0 or not log_y)

    pts = [[(x, math.log10(y) if log_y else y) for x, y in zip(xs, ys) if keep(y)] for _, xs, ys in series]
    flat = [p for s in pts for p in s]
    if len(flat) < 2:
        return ""
    x0, x1 = min(p[0] for p in flat), max(p[0] for p in flat)
    y0, y1 = min(p[1] for p in flat), max(p[1] for p in flat)
    span_x, span_y = (x1 - x0) or 1, (y1 - y0) or 1
    grid = [[" "] * width for _ in range(height)]
    for k, s in enumerate(pts):
        for x, y in s:
            row, col = round((y1 - y) / span_y * (height - 1)), round((x - x0) / span_x * (width - 1))
            grid[row][col] = MARKERS[k % len(MARKERS)]
    lines = []
    for r, row in enumerate(grid):
        label = y1 - r * span_y / (height - 1)
        text = f"{10 ** label:8.1e}" if log_y else f"{label:8.3f}"
        lines.append(f"{text} |{''.join(row)}")
    lines.append(" " * 9 + "+" + "-" * width)
    lines.append(" " * 10 + f"{x0:<{width // 2}g}{x1:>{width - width // 2}g}")
    if legend:
        lines += _legend([f"{MARKERS[k % len(MARKERS)]} {label}" for k, (label, _, _) in enumerate(series)], width)
    return "\n".join(lines)


def _legend(entries: list[str], width: int) -> list[str]:
    """The entries side by side, wrapped to the chart's width."""
    lines, line = [], ""
    for e in entries:
        if line and len(line) + 3 + len(e) > width:
            lines.append(" " * 10 + line)
            line = ""
        line = f"{line}   {e}" if line else e
    return lines + [" " * 10 + line] if line else lines
