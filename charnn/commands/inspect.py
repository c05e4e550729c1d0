"""charnn inspect: look inside a trained network on a text.

    charnn inspect activations RUN [TEXT|-]   states, gates, losses and guesses per token: an HTML
                                              page, a coloured terminal view, arrays, --find, saturation
    charnn inspect gradients RUN [TEXT|-]     how far back the gradient reaches, per layer (and --compare)

The measuring is charnn.inspect's; this module picks the text, calls it and renders.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

Opt = typer.Option

TEXT_HELP = "Text to look at, or - to read it from stdin. [default: --file, else the run's validation text]"
FILE_HELP = "Read the text from this UTF-8 file."


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    sub = typer.Typer(no_args_is_help=True, help="Look inside a trained network: what its units, gates and "
                      "gradients do on a text (HTML page, charts, JSON).\n\n"
                      "Example: charnn inspect activations checkpoints/shakespeare --find --html units.html")
    sub.command(
        "activations",
        help="Run the model over a text and record, per token and layer, the hidden state, the cell state "
        "(LSTM) and the gates (LSTM i f g o, GRU r z n). --html writes a page that colours the text by any "
        "unit and shows the model's guesses and loss per token; --find lists the units that track simple "
        "properties of the text; the gate saturation table is printed. Without TEXT (- reads stdin) or --file, "
        "the text is the start of the run's validation text.\n\n"
        "Example: charnn inspect activations checkpoints/shakespeare --find --html units.html\n\n"
        "Example: echo 'if (x) { y(\"a\"); }' | charnn inspect activations RUN - --unit 1:37 --show",
    )(guard(activations_cmd))
    sub.command(
        "gradients",
        help="Measure how far back the gradient reaches: the mean norm of d loss_t / d h_(t-k) for k = 1..K, "
        "per layer, with each recurrent matrix's largest singular value and the mean forget (LSTM) or "
        "update (GRU) gate. --compare adds runs (e.g. rnn, gru and lstm trained alike) to the same table "
        "and chart.\n\n"
        "Example: charnn inspect gradients checkpoints/lstm --compare checkpoints/gru --compare "
        "checkpoints/rnn --plot gradients.png",
    )(guard(gradients_cmd))
    app.add_typer(sub, name="inspect")


def activations_cmd(
    run: str = typer.Argument(..., help="Run folder or checkpoint file."),
    text: Optional[str] = typer.Argument(None, help=TEXT_HELP),
    file: Optional[str] = Opt(None, "--file", help=FILE_HELP),
    length: int = Opt(2000, "--length", help="Read at most this many characters of the text."),
    html: Optional[str] = Opt(None, "--html", help="Write the self-contained page (opens from file://) here."),
    fmt: Optional[str] = Opt(None, "--format", help="Dump the arrays: npy (a folder of .npy files, --out "
                             "needed) or jsonl (one JSON line per token; stdout unless --out)."),
    out: Optional[str] = Opt(None, "--out", "-o", help="Where --format writes: a folder (npy) or a file (jsonl)."),
    find: bool = Opt(False, "--find", help="List the units that track quotes, bracket depth, line position, "
                     "words, line breaks, uppercase runs and code comments best (correlation)."),
    top: int = Opt(3, "--top", help="Units listed per property by --find."),
    unit: Optional[str] = Opt(None, "--unit", help="The unit to colour by, LAYER:UNIT (or UNIT, layer 0); "
                              "also the page's first unit. [default: --find's best, else 0:0]"),
    kind: str = Opt("h", "--kind", help="What of the unit to show: h, c (LSTM), a gate (LSTM i f g o, GRU r z n), "
                    "or loss (the loss paid per token)."),
    show: bool = Opt(False, "--show", help="Print the text coloured by the unit. [default: on a terminal when "
                     "no file is written]"),
    plot: Optional[str] = Opt(None, "--plot", help="Draw the gate saturation scatter (each unit's share of time "
                              "below 0.1 against above 0.9) into this image (.png, .svg, .pdf)."),
    threads: int = Opt(1, "--threads", help="CPU threads. A step of one stream is a few small products that "
                       "a second thread slows down."),
    json_out: bool = Opt(False, "--json", help="Print the summary (saturation, --find's units) as JSON."),
):
    from charnn.inspect import dump, properties, saturation
    from charnn.inspect import find as finder
    from charnn.inspect.text import char_index

    fmt = _check_format(fmt, out, json_out)
    _check_positive(length=length, top=top, threads=threads)
    _threads(threads)
    if plot:
        _check_plot(plot)
    r, acts = _record(run, text, file, length)
    if plot and acts.cell == "rnn":
        from charnn.errors import CharnnError

        raise CharnnError("--plot draws gate saturation, and a plain RNN has no gates", 2)
    start = _parse_unit(unit, kind, acts) if unit or kind != "h" else None
    found = None
    if find:
        props = properties.token_properties(properties.text_properties(acts.text), char_index(acts.pieces))
        found = finder.find_units(acts, props, top=top)
    sat = saturation.saturation(acts)
    _write_files(r, acts, found, sat, html, fmt, out, plot, start)
    if fmt == "jsonl" and out is None:
        sys.stdout.writelines(dump.jsonl_lines(acts))
        return
    if json_out:
        from charnn.commands.common import write_json

        write_json(_summary(r, acts, sat, found))
        return
    if show or (sys.stdout.isatty() and not (html or fmt or plot)):
        _show_text(acts, start or _start(acts, found))
    _report(r, acts, sat, found)


def gradients_cmd(
    run: str = typer.Argument(..., help="Run folder or checkpoint file."),
    text: Optional[str] = typer.Argument(None, help=TEXT_HELP),
    file: Optional[str] = Opt(None, "--file", help=FILE_HELP),
    length: int = Opt(20000, "--length", help="Read at most this many characters of the text."),
    lag: int = Opt(200, "--lag", "-k", help="K: measure k = 1..K tokens back (the text needs K + 2 tokens)."),
    positions: int = Opt(32, "--positions", help="Positions t averaged over, spread evenly over the text."),
    compare: Optional[list[str]] = Opt(None, "--compare", help="Another run to measure on the same text "
                                       "(repeat for several): one table and one chart for all."),
    plot: Optional[str] = Opt(None, "--plot", help="Draw the gradient against k (log scale) into this image "
                              "(.png, .svg, .pdf)."),
    threads: int = Opt(1, "--threads", help="CPU threads (more can help a large --positions on a wide model)."),
    json_out: bool = Opt(False, "--json", help="Print the measurements as JSON."),
):
    from charnn.inspect.gradients import measure
    from charnn.run import load

    _check_positive(length=length, lag=lag, positions=positions, threads=threads)
    _threads(threads)
    if plot:
        _check_plot(plot)
    source, where = _read_text(text, file, length, None)
    flows = []
    for arg in [run, *(compare or [])]:
        r = load(arg)
        if source is None:                     # the first run's validation text, for every run
            source, where = _read_text(None, None, length, r)
        ids, cond = _encode(r, source)
        flow = measure(r.model, ids, lag=lag, positions=positions, cond=cond)
        flow.meta = {"run": r.name, "checkpoint": str(r.path), "cell": r.config.cell, "tokens": len(ids)}
        flows.append(flow)
    if plot:
        from charnn.inspect.plots import gradient_chart

        sys.stderr.write(f"wrote {gradient_chart([(_label(f), f) for f in flows], plot)}\n")
    if json_out:
        from charnn.commands.common import write_json

        write_json({"text": where, "lag": lag, "runs": [_flow_json(f) for f in flows]})
        return
    _gradient_report(flows, where)


# ----------------------------------------------------------------------------------------------
# the text and the recording


def _read_text(text: str | None, file: str | None, length: int, run) -> tuple[str | None, str]:
    """(text, where it came from): TEXT, stdin for -, --file, or (with a run) its validation text;
    (None, "") when none was given and no run is at hand yet."""
    from charnn.errors import CharnnError
    from charnn.inspect.text import read_file, validation_text

    if text is not None and file is not None:
        raise CharnnError("give the text as TEXT or as --file, not both", 2)
    if text == "-":
        try:
            got = sys.stdin.buffer.read().decode("utf-8") if hasattr(sys.stdin, "buffer") else sys.stdin.read()
        except UnicodeDecodeError as e:
            raise CharnnError(f"stdin is not UTF-8 text (byte {e.start})") from None
        return _cut(got, length), "stdin"
    if text is not None:
        return _cut(text, length), "the text given"
    if file is not None:
        return read_file(file, length), file
    if run is None:
        return None, ""
    return validation_text(run.ckpt, run.path.parent, length)


def _cut(text: str, length: int) -> str:
    if len(text) > length:
        sys.stderr.write(f"note: looking at the first {length:,} of {len(text):,} characters (--length)\n")
    return text[:length]


def _encode(r, text: str):
    """The run's ids for `text` and, for an --input bow model, its conditioning."""
    from charnn.inspect.text import encode
    from charnn.representations.bow import cond_for

    ids = encode(r.tokenizer, text)
    return ids, cond_for(r.ckpt, r.tokenizer, ids)


def _record(run: str, text: str | None, file: str | None, length: int):
    from charnn.inspect.activations import record
    from charnn.run import load

    r = load(run)
    source, where = _read_text(text, file, length, r)
    ids, cond = _encode(r, source)
    meta = {"run": r.name, "checkpoint": str(r.path), "tokenizer": r.tokenizer.name, "text": where}
    return r, record(r.model, r.tokenizer, ids, cond, meta=meta)


# ----------------------------------------------------------------------------------------------
# options


def _check_positive(**values: int) -> None:
    from charnn.errors import CharnnError

    for name, v in values.items():
        if v < 1:
            raise CharnnError(f"--{name} must be at least 1", 2)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _check_format(fmt: str | None, out: str | None, json_out: bool) -> str | None:
    from charnn.errors import CharnnError

    if fmt is None:
        if out is not None:
            raise CharnnError("--out goes with --format npy|jsonl", 2)
        return None
    fmt = fmt.lower()
    if fmt not in ("npy", "jsonl"):
        raise CharnnError(f"--format must be npy or jsonl, not {fmt!r}", 2)
    if fmt == "npy" and out is None:
        raise CharnnError("--format npy writes a folder of arrays: say where with --out DIR", 2)
    if fmt == "jsonl" and out is None and json_out:
        raise CharnnError("--format jsonl without --out prints to stdout, as --json does: give --out FILE", 2)
    return fmt


def _check_plot(path: str) -> None:
    from charnn.inspect.plots import check_path, pyplot

    check_path(path)
    pyplot()                                   # a missing matplotlib fails before the work


def _parse_unit(unit: str | None, kind: str, acts) -> dict:
    """--unit LAYER:UNIT (or UNIT) and --kind -> {"kind", "layer", "unit"}, checked against the model."""
    from charnn.errors import CharnnError

    kinds = [*acts.kinds, "loss"]
    if kind not in kinds:
        raise CharnnError(f"--kind {kind!r}: this {acts.cell.upper()} has {', '.join(kinds)}", 2)
    spec = unit or "0:0"
    try:
        layer, u = (int(p) for p in spec.split(":")) if ":" in spec else (0, int(spec))
    except ValueError:
        raise CharnnError(f"--unit {spec!r}: write LAYER:UNIT, e.g. 1:37", 2) from None
    if not (0 <= layer < acts.layers and 0 <= u < acts.hidden):
        raise CharnnError(f"--unit {spec}: the model has layers 0..{acts.layers - 1} and units "
                          f"0..{acts.hidden - 1}", 2)
    return {"kind": kind, "layer": layer, "unit": u}


def _start(acts, found) -> dict:
    from charnn.inspect.page import start_unit

    return start_unit(acts, found)


# ----------------------------------------------------------------------------------------------
# output


def _write_files(r, acts, found, sat, html, fmt, out, plot, start) -> None:
    from charnn.atomic import write_text
    from charnn.inspect import dump

    if html:
        from charnn.inspect.page import page_data, render
        from charnn.inspect.text import token_text

        data = page_data(acts, lambda i: token_text(r.tokenizer, i), found, title=f"charnn inspect: {r.name}")
        if start is not None:
            data["start"] = start
        write_text(html, render(data))
        sys.stderr.write(f"wrote {html}\n")
    if fmt == "npy":
        for path in dump.save_npy(acts, out):
            sys.stdout.write(f"{path}\n")
    elif fmt == "jsonl" and out is not None:
        from charnn.atomic import atomic_file

        with atomic_file(out, "w") as f:
            f.writelines(dump.jsonl_lines(acts))
        sys.stderr.write(f"wrote {out}\n")
    if plot:
        from charnn.inspect.plots import saturation_chart

        sys.stderr.write(f"wrote {saturation_chart(sat, plot)}\n")


def _summary(r, acts, sat, found) -> dict:
    import numpy as np

    finite = acts.loss[np.isfinite(acts.loss)]
    return {"run": r.name, "checkpoint": str(r.path), "text": acts.meta.get("text"), "tokens": len(acts.ids),
            "cell": acts.cell, "layers": acts.layers, "hidden": acts.hidden,
            "mean_loss": float(finite.mean()) if len(finite) else None, "saturation": sat, "units": found}


def _report(r, acts, sat, found) -> None:
    """The summary, saturation table and --find's table as text on stdout."""
    s = _summary(r, acts, sat, found)
    w = sys.stdout.write
    loss = f"{s['mean_loss']:.4f} nats/token" if s["mean_loss"] is not None else "-"
    w(f"{r.name}: {acts.cell.upper()} {acts.layers} x {acts.hidden}, {s['tokens']:,} tokens of {s['text']}, "
      f"mean loss {loss}\n")
    if sat:
        w("\ngate saturation (share of token x unit: left < 0.1, right > 0.9)\n")
        w(f"{'layer':>5}  {'gate':<4} {'left':>6} {'right':>6}\n")
        for e in sat:
            w(f"{e['layer']:>5}  {e['gate']:<4} {e['left']:>6.1%} {e['right']:>6.1%}\n")
    if found is not None:
        from charnn.inspect.properties import DESCRIPTIONS

        w("\nunits that track the text (Pearson r over the tokens)\n")
        w(f"{'property':<15} {'r':>6}  {'layer':>5} {'kind':<4} {'unit':>5}\n")
        for f in found:
            if not f["units"]:
                w(f"{f['property']:<15} {'-':>6}  (not in this text: {DESCRIPTIONS[f['property']]} never changes)\n")
            for k, u in enumerate(f["units"]):
                name = f["property"] if k == 0 else ""
                w(f"{name:<15} {u['r']:>+6.2f}  {u['layer']:>5} {u['kind']:<4} {u['unit']:>5}\n")


def _show_text(acts, sel: dict) -> None:
    """The text with each token's background coloured by the selected unit (Rich)."""
    import math

    from rich.console import Console
    from rich.text import Text

    kind = sel["kind"]
    values = acts.loss if kind == "loss" else acts.unit(kind, sel["layer"], sel["unit"])
    scale = max((float(v) for v in acts.loss if math.isfinite(v)), default=1.0) or 1.0
    out = Text()
    for piece, v in zip(acts.pieces, values):
        v = float(v)
        style = f"on {_colour(kind, v, scale)}" if math.isfinite(v) else ""
        out.append(piece.replace("\n", "↵\n") if piece == "\n" else piece, style=style)
    what = "loss paid per token" if kind == "loss" else f"layer {sel['layer']}, {kind}, unit {sel['unit']}"
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    console.print(out)
    console.print(f"[dim]coloured by {what}: {_legend(kind)}[/dim]\n")


def _colour(kind: str, v: float, loss_scale: float) -> str:
    """The page's colour scale: blue - white - red for h, tanh c and the candidates, white - green
    for the sigmoid gates, white - purple for the loss."""
    import math

    from charnn.inspect.cells import SIGMOID_GATES

    def mix(to: tuple[int, int, int], s: float) -> str:
        s = max(0.0, min(1.0, s))
        return "rgb({},{},{})".format(*(round(255 + (c - 255) * s) for c in to))

    if kind == "loss":
        return mix((148, 52, 110), v / loss_scale)
    if kind in {g for gates in SIGMOID_GATES.values() for g in gates}:
        return mix((44, 160, 44), v)
    s = math.tanh(v) if kind == "c" else v
    return mix((214, 39, 40), s) if s >= 0 else mix((31, 119, 180), -s)


def _legend(kind: str) -> str:
    if kind == "loss":
        return "white 0 nats, purple the most"
    if kind in ("h", "c", "g", "n"):
        return "blue -1, white 0, red +1" + (" (tanh c)" if kind == "c" else "")
    return "white 0 (shut), green 1 (open)"


def _label(flow) -> str:
    """The run's name, with its cell when the name does not say it."""
    run, cell = flow.meta["run"], flow.meta["cell"]
    return run if cell in run.lower() else f"{run} ({cell})"


def _flow_json(flow) -> dict:
    return {**flow.meta, "positions": flow.positions, "norms": flow.norms.tolist(),
            "relative": flow.relative.tolist(), "falls_below_1e-3_at": flow.falls_below(),
            "cell_norms": flow.cell_norms.tolist() if flow.cell_norms is not None else None,
            "sigma_max": flow.sigma, "mean_gate": flow.mean_gate, "gate": flow.gate_name}


def _gradient_report(flows, where: str) -> None:
    from charnn.commands.textplot import chart

    w = sys.stdout.write
    K = int(flows[0].lags[-1])
    picks = [k for k in (10, 50, 100) if k < K] + [K]
    w(f"gradient of the loss k tokens back, mean over {len(flows[0].positions)} positions of {where}\n")
    w(f"{'run':<20} {'layer':>5} {'sigma_max':>9} {'gate':>9} {'|g| k=1':>9} "
      + " ".join(f"{'k=' + str(k):>8}" for k in picks) + f" {'<1e-3 at':>9}\n")
    for flow in flows:
        for l, below in enumerate(flow.falls_below()):
            gate = f"{flow.gate_name}={flow.mean_gate[l]:.2f}" if flow.mean_gate else "-"
            rel = " ".join(f"{flow.relative[l, k - 1]:>8.1e}" for k in picks)
            w(f"{_label(flow)[:20]:<20} {l:>5} {flow.sigma[l]['all']:>9.3f} {gate:>9} {flow.norms[l, 0]:>9.2e} "
              f"{rel} {below if below is not None else '> ' + str(K):>9}\n")
    series = [(f"{_label(f)} layer {l}", f.lags.tolist(), f.relative[l].tolist())
              for f in flows for l in range(f.relative.shape[0])]
    w("\n|d loss_t / d h_(t-k)| relative to k = 1 (log scale) against k\n" + chart(series, log_y=True) + "\n")
