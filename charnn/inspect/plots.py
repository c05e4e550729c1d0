"""Charts as image files, drawn with matplotlib (the optional extra charnn[plot]), imported only
when a chart is asked for, with the Agg backend (no display needed):

    loss_chart        training and validation loss against steps and against wall-clock time,
                      learning rate on a second axis; several runs overlaid
    gradient_chart    |d loss_t / d h_(t-k)| relative to k = 1, log scale, one curve per run and layer
    saturation_chart  each gate unit's left- against right-saturated share (Karpathy et al., Fig. 3)

The file type follows the name's suffix (.png, .svg, .pdf); the file is written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from charnn.atomic import write_bytes
from charnn.errors import CharnnError
from charnn.inspect.curves import Curves

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def pyplot():
    """matplotlib.pyplot on the Agg backend; a one-line error naming the extra when it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise CharnnError("drawing charts needs matplotlib: pip install 'charnn[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_path(path: Path | str) -> Path:
    """A chart's destination: its suffix must name a format, its folder must exist."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise CharnnError(f"{path}: a chart is written as {', '.join(FORMATS)} (say which by the file name)", 2)
    if not path.parent.is_dir():
        raise CharnnError(f"{path.parent}: no such folder", 2)
    return path


def save(fig, path: Path | str) -> Path:
    path = check_path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=FORMATS[path.suffix.lower()], dpi=150, bbox_inches="tight")
    pyplot().close(fig)
    write_bytes(path, buf.getvalue())
    return path


def _finite_pairs(xs, ys):
    pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


def loss_chart(runs: list[Curves], path: Path | str) -> Path:
    """Loss in nats per character against steps (left, learning rate on its right axis) and
    against time spent training (right, in seconds or minutes); one colour per run, training
    thin, validation with dots."""
    plt = pyplot()
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    lr_axis = by_step.twinx()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    longest = max([e for r in runs for e in r.elapsed + r.val_elapsed if math.isfinite(e)], default=0.0)
    unit, per = ("minutes", 60.0) if longest >= 120 else ("seconds", 1.0)
    for k, run in enumerate(runs):
        col = colours[k % len(colours)]
        train, val = run.per_char(run.train), run.per_char(run.val)
        by_step.plot(run.steps, train, color=col, lw=1, alpha=0.45)
        by_step.plot(run.val_steps, val, color=col, lw=2, marker="o", ms=3, label=f"{run.name} validation")
        lr_axis.plot(*_finite_pairs(run.steps, run.lr), color=col, lw=1, ls=":")
        by_time.plot(*_finite_pairs([e / per for e in run.elapsed], train), color=col, lw=1, alpha=0.45)
        by_time.plot(*_finite_pairs([e / per for e in run.val_elapsed], val), color=col, lw=2, marker="o", ms=3,
                     label=run.name)
    by_step.set(xlabel="step", ylabel="loss (nats/char)", title="loss by step (thin: training; dotted: learning rate)")
    lr_axis.set_ylabel("learning rate (dotted)")
    lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    by_time.set(xlabel=f"{unit} of training", ylabel="loss (nats/char)", title="loss by wall-clock time")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
    by_step.legend(loc="upper right", fontsize=8)
    return save(fig, path)


def gradient_chart(flows: list[tuple[str, object]], path: Path | str, threshold: float = 1e-3) -> Path:
    """flows: (label, charnn.inspect.gradients.GradientFlow) pairs. The gradient's norm k tokens
    back over its value at k = 1, log scale; the top layer solid, lower layers dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (label, flow) in enumerate(flows):
        rel = flow.relative                                             # (L, K)
        for layer in range(rel.shape[0]):
            top = layer == rel.shape[0] - 1
            ys = [y if y > 0 else math.nan for y in rel[layer]]
            ax.plot(flow.lags, ys, color=colours[k % len(colours)], lw=2 if top else 1.2,
                    ls="-" if top else "--", label=f"{label}, layer {layer}")
    ax.axhline(threshold, color="grey", lw=1, ls=":")
    ax.text(1, threshold, f" {threshold:g} of k = 1", va="bottom", color="grey", fontsize=8)
    ax.set_yscale("log")
    ax.set(xlabel="k (tokens back)", ylabel="|d loss_t / d h_(t-k)|  relative to k = 1",
           title="How far back the gradient reaches")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save(fig, path)


def saturation_chart(sat: list[dict], path: Path | str) -> Path:
    """sat: charnn.inspect.saturation.saturation()'s list. One panel per gate; each dot a unit,
    its share of time left-saturated (x) against right-saturated (y); colour by layer."""
    plt = pyplot()
    gates = list(dict.fromkeys(e["gate"] for e in sat))
    if not gates:
        raise CharnnError("a plain RNN has no gates to chart", 2)
    fig, axes = plt.subplots(1, len(gates), figsize=(3.6 * len(gates), 3.6), squeeze=False)
    for ax, gate in zip(axes[0], gates):
        for e in (e for e in sat if e["gate"] == gate):
            ax.scatter(e["units_left"], e["units_right"], s=8, alpha=0.6, label=f"layer {e['layer']}")
        ax.plot([0, 1], [1, 0], color="grey", lw=0.8, ls=":")
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"gate {gate}", xlabel="left-saturated (< 0.1)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("right-saturated (> 0.9)")
    axes[0][0].legend(fontsize=8)
    return save(fig, path)
