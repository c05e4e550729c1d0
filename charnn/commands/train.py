"""charnn train: fit a recurrent language model to a corpus.

The options that configure the run are not written out here: they are built from the fields
of ModelConfig, TrainConfig and DataConfig (charnn.config.option), so a new flag is declared
once, with its help and default, where the value lives. This module adds the command's own
options (--out, --resume, --force, --dry-run, --quiet, --json, --nproc), hands everything to
charnn.training.session, and renders the events and the result.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from charnn.commands.common import unescape
from charnn.config import DataConfig, ModelConfig, TrainConfig, cli_fields
from charnn.errors import CharnnError

Opt = typer.Option
HELP = ("Train an LSTM/GRU/RNN language model on CORPUS: text files, directories (read "
        "recursively), - for stdin, or a catalog name (default: lee, which ships with gensim).\n\n"
        "Example: charnn train corpus.txt --time-budget 10m\n\n"
        "Fine-tune a trained run on new text: charnn train names.txt --docs lines --init-from "
        "checkpoints/lee --out checkpoints/names\n\n"
        "Several processes (data-parallel): charnn train corpus.txt --nproc 2, or "
        "torchrun --nproc-per-node 2 -m charnn train corpus.txt")
CONFIGS = (ModelConfig, TrainConfig, DataConfig)
METAVARS = {int: "N", float: "F", str: "TEXT", bool: None}
ESCAPED = {f.name for cls in CONFIGS for f in cli_fields(cls) if f.metadata["escapes"]}

# The command's own options: (name, annotation, typer.Option)
OWN = [
    ("out", Optional[Path], Opt(None, "--out", "-o", metavar="DIR",
                                         help="Run folder.  [default: checkpoints/<corpus name>]")),
    ("resume", Optional[Path], Opt(None, metavar="DIR", help="Continue the run in this folder exactly where it stopped.")),
    ("force", bool, Opt(False, "--force", help="Start afresh in a run folder that already holds a run.")),
    ("dry_run", bool, Opt(False, "--dry-run", help="Print the model and schedule that would be chosen, "
                          "and why; train nothing.")),
    ("quiet", bool, Opt(False, "--quiet", "-q", help="No progress on stderr (warnings and errors still).")),
    ("json_out", bool, Opt(False, "--json", help="Print a JSON summary on stdout at the end.")),
    ("nproc", Optional[int], Opt(None, "--nproc", metavar="N", help="Train data-parallel on N processes of this "
                                 "machine (torch.distributed.run; gloo on CPU, nccl on GPUs, one GPU "
                                 "each); --batch-size stays the global batch.  [default: 1]")),
]


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard
    from charnn.commands.nproc import in_session

    app.command("train", help=HELP)(guard(in_session(train_cmd)))


def _config_parameters() -> list[inspect.Parameter]:
    """A Typer option for each config field declared with charnn.config.option()."""
    params = []
    for cls in CONFIGS:
        for f in cli_fields(cls):
            m = f.metadata
            shown = m["shown"] if m["shown"] is not None else _show(f.default)
            names = [m["flag"] or "--" + f.name.replace("_", "-")]
            kind = m["cli_type"] or _plain_type(f.type)
            option = Opt(None, *names, help=f"{m['help']}  [default: {shown}]", show_default=False,
                         metavar=m["metavar"] or METAVARS[kind])
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                            annotation=Optional[kind]))
    return params


def _plain_type(annotation: Any) -> type:
    name = str(annotation).replace("Optional[", "").rstrip("]")
    return {"int": int, "float": float, "str": str, "bool": bool}[name]


def _show(value: Any) -> str:
    return "off" if value is False else "on" if value is True else "none" if value is None else f"{value:g}" \
        if isinstance(value, float) else str(value)


def train_cmd(ctx: typer.Context, corpus: Optional[list[str]] = None, **options: Any):
    started = time.time()
    from charnn.training.distributed import launched

    if launched() and "CHARNN_LAUNCHED_AT" in os.environ:
        started = float(os.environ["CHARNN_LAUNCHED_AT"])   # --nproc: the budget counts from its start
    own = {name: options.pop(name) for name, _, _ in OWN}
    options = {k: unescape(v) if isinstance(v, str) and k in ESCAPED else v for k, v in options.items()}
    if own["nproc"] is not None:
        from charnn.commands.nproc import launch

        code = launch(ctx, own["nproc"], corpus, own["out"], own["resume"], options.get("batch_size"),
                      own["quiet"], started)
        if code is not None:     # None: --nproc 1, which is this process
            raise typer.Exit(code)
    _train(corpus, options, own, started)


train_cmd.__signature__ = inspect.Signature(
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
     inspect.Parameter("corpus", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[list[str]],
                       default=typer.Argument(None, metavar="CORPUS", show_default=False,
                                              help="Text files, directories (read recursively), - for "
                                              "stdin, or a catalog name.  [default: lee]"))]
    + _config_parameters()
    + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=a) for n, a, o in OWN])


def _train(corpus: list[str] | None, options: dict[str, Any], own: dict[str, Any], started: float) -> None:
    from charnn.commands.common import write_json
    from charnn.commands.progress import DownloadBar, TrainReporter
    from charnn.training import session
    from charnn.training.distributed import current

    group = current()            # this process's rank; a single process outside torchrun
    quiet = own["quiet"] or not group.is_main
    json_out = own["json_out"] and group.is_main
    reporter = TrainReporter(quiet=quiet)
    request = session.Request(corpus=list(corpus or []) or None, given=options, out=own["out"], resume=own["resume"],
                              force=own["force"], dry_run=own["dry_run"])
    try:
        with DownloadBar(quiet) as bar:
            result = session.run(request, reporter, started, download=bar, group=group)
    finally:
        reporter.close()
    if own["dry_run"]:
        if group.is_main:
            write_json(result) if json_out else sys.stdout.write(describe_dry_run(result))
        return
    _finish(result, quiet, json_out, group)


def _finish(summary: dict[str, Any], quiet: bool, json_out: bool, group) -> None:
    if not quiet:
        sys.stderr.write(summary_line(summary) + "\n")
    if json_out:
        from charnn.commands.common import write_json

        write_json(summary)
    if summary.get("diverged"):
        raise CharnnError(summary["diverged"])
    if summary["interrupted"]:
        if quiet and group.is_main:
            sys.stderr.write(summary_line(summary) + "\n")
        raise typer.Exit(130)


def summary_line(s: dict[str, Any]) -> str:
    """The last line of a run: done (or stopped), its validation loss, what to do next."""
    from charnn.commands.common import fmt_duration

    val = (f"; val {s['val_nats_per_char']:.4f} nats/char ({s['val_bpc']:.4f} bits/char, best "
           f"{s['best_val_bpc']:.4f})" if "val_nats_per_char" in s else "")
    if s["interrupted"]:
        return (f"stopped at step {s['steps']} after {fmt_duration(s['elapsed'])}{val}; continue with: "
                f"charnn train --resume {s['run_dir']}")
    return (f"done: {s['steps']} steps in {fmt_duration(s['elapsed'])}{val}; sample with: "
            f"charnn sample {s['run_dir']}")


def regularisers(m: dict[str, Any], t: dict[str, Any]) -> str:
    """The regularisers beyond dropout that are on, for the model line: ', weight drop 0.3, AR 2'."""
    on = [(name, v) for name, v in (("weight drop", m.get("weight_drop", 0)), ("AR", t.get("ar", 0)),
                                    ("TAR", t.get("tar", 0))) if v]
    return "".join(f", {name} {v:g}" for name, v in on)


def describe_dry_run(d: dict[str, Any]) -> str:
    """What a dry run would train, for people: the model, the schedule, the limits and why."""
    m, t = d["model"], d["train"]
    limits = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in
                       (("max_steps", t["max_steps"]), ("epochs", t["epochs"])) if v is not None)
    if t["time_budget"] is not None:
        from charnn.commands.common import fmt_duration

        limits = ", ".join(filter(None, [limits, f"time budget {fmt_duration(t['time_budget'])}"]))
    lines = [
        f"run       {d['run_dir']}",
        f"model     {m['layers']} x {m['hidden']} {m['cell'].upper()}, input {m['input']} ({m['embed_dim']}), "
        f"dropout {m['dropout']:g}{regularisers(m, t)}, vocabulary {m['vocab_size']:,} ({d['data']['tokenizer']})",
        f"batches   {t['batch_size']} streams x {t['seq_len']} steps, lr {t['lr']:g} (warmup {t['warmup']} "
        f"steps, cosine), grad clip {t['grad_clip']:g}, evaluate every {t['eval_every']} steps",
        f"limits    {limits}",
    ]
    if d.get("plan") and d["plan"]["tokens_per_sec"]:
        p = d["plan"]
        lines.append(f"expected  {p['tokens_per_sec']:,.0f} tokens/s, {p['planned_tokens'] / 1e6:,.2f}M tokens, "
                     f"{p['planned_epochs']:.2f} epochs")
    lines += ["why:"] + [f"  - {r}" for r in d["why"]]
    return "\n".join(lines) + "\n"
