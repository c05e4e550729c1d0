"""charnn train: fit a recurrent language model to a corpus."""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from charnn.errors import CharnnError

Opt = typer.Option


def register(app: typer.Typer) -> None:
    from charnn.cli import guard

    app.command(
        "train",
        help="Train an LSTM/GRU/RNN language model on CORPUS: a text file, - for stdin, or a "
        "catalog name (default: lee, which ships with gensim).\n\n"
        "Example: charnn train corpus.txt --time-budget 10m\n\n"
        "Several processes (data-parallel): charnn train corpus.txt --nproc 2, or "
        "torchrun --nproc-per-node 2 -m charnn train corpus.txt",
    )(guard(_in_session(train_cmd)))


def _in_session(fn):
    """Run the command inside charnn.distributed.session(): under torchrun it joins the process
    group (and always leaves it); in a plain process it is a single-process group."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from charnn import distributed

        if kwargs.get("nproc") is not None and distributed.launched():
            # before joining: --nproc under torchrun would start processes from processes
            raise CharnnError("--nproc starts its own processes: under torchrun leave it out "
                              "(torchrun's --nproc-per-node sets their number)", 2)
        with distributed.session():
            return fn(*args, **kwargs)

    return wrapper


def train_cmd(
    ctx: typer.Context,
    corpus: Optional[str] = typer.Argument(None, help="Text file, - for stdin, or catalog name. [default: lee]"),
    out: Optional[Path] = Opt(None, "--out", "-o", help="Run folder. [default: checkpoints/<corpus name>]"),
    cell: Optional[str] = Opt(None, help="Recurrent cell: lstm, gru or rnn. [default: lstm]"),
    layers: Optional[int] = Opt(None, help="Stacked recurrent layers. [default: 2]"),
    hidden: Optional[int] = Opt(None, help="Hidden units per layer. [default: 512]"),
    embed_dim: Optional[int] = Opt(None, help="Input embedding size. [default: 128]"),
    dropout: Optional[float] = Opt(None, help="Dropout between layers and before the output. [default: 0]"),
    tie_weights: Optional[bool] = Opt(None, "--tie-weights/--no-tie-weights",
                                      help="Share the input embedding with the output layer. [default: off]"),
    tokenizer: str = Opt("char", help="char, byte, word, bpe or unigram."),
    vocab_size: Optional[int] = Opt(None, help="Vocabulary size for bpe/unigram (and word's cap). [default: 1000 for bpe/unigram]"),
    min_count: Optional[int] = Opt(None, help="word: tokens seen fewer times become <unk>. [default: 1]"),
    max_vocab: Optional[int] = Opt(None, help="word: keep at most this many tokens (and the bag of words of --input bow). [default: all; 2000 for bow]"),
    input: Optional[str] = Opt(None, "--input", help="What the network reads: embedding (learned), onehot, "
                               "word2vec (with --vectors; word tokenizer) or bow (conditioned on each "
                               "document's bag of words; sample with --topic). [default: embedding]"),
    vectors: Optional[str] = Opt(None, help="Word vectors for --input word2vec: a `charnn embed` .kv file "
                                 "or a word2vec text/binary file; their dimension sets --embed-dim."),
    freeze_embeddings: bool = Opt(False, "--freeze-embeddings", help="Keep the input embedding fixed (e.g. the word2vec vectors)."),
    doc_sep: Optional[str] = Opt(None, help="--input bow: the text between documents (\\n escapes allowed). [default: a blank line]"),
    seq_len: Optional[int] = Opt(None, help="Steps per chunk of truncated BPTT. [default: 128]"),
    batch_size: Optional[int] = Opt(None, help="Parallel streams per step; the global batch, shared out over the processes of a distributed run. [default: 32]"),
    lr: Optional[float] = Opt(None, help="Peak learning rate of AdamW. [default: 0.003]"),
    grad_clip: Optional[float] = Opt(None, help="Clip the global gradient norm (0: off). [default: 1.0]"),
    warmup: Optional[int] = Opt(None, help="Linear warmup steps before the cosine decay. [default: 100]"),
    epochs: Optional[int] = Opt(None, help="Stop after this many passes over the training split."),
    max_steps: Optional[int] = Opt(None, help="Stop after this many steps."),
    time_budget: Optional[str] = Opt(None, help="Stop at this wall-clock time (90s, 10m, 2h), "
                                     "the whole command included; the schedule is fitted to it. "
                                     "[default: 5m when no other limit is given]"),
    val_frac: Optional[float] = Opt(None, help="Last fraction of the text held out for validation. [default: 0.1]"),
    eval_every: Optional[int] = Opt(None, help="Validate (and save) every N steps. [default: 500]"),
    device: Optional[str] = Opt(None, help="auto, cpu, cuda or mps (auto: CUDA when available). [default: auto]"),
    amp: Optional[bool] = Opt(None, "--amp/--no-amp", help="bf16 autocast on CUDA. [default: on]"),
    seed: Optional[int] = Opt(None, help="Random seed; a CPU run with a seed repeats bit for bit. [default: 1337]"),
    resume: Optional[Path] = Opt(None, help="Continue the run in this folder exactly where it stopped."),
    force: bool = Opt(False, "--force", help="Start afresh in a run folder that already holds a run."),
    dry_run: bool = Opt(False, "--dry-run", help="Print the model and schedule that would be chosen, and why; train nothing."),
    quiet: bool = Opt(False, "--quiet", "-q", help="No progress on stderr."),
    json_out: bool = Opt(False, "--json", help="Print a JSON summary on stdout at the end."),
    nproc: Optional[int] = Opt(None, "--nproc", help="Train data-parallel on N processes of this "
                               "machine (torch.distributed.run; gloo on CPU, nccl on GPUs, one GPU "
                               "each); --batch-size stays the global batch. [default: 1]"),
):
    started = time.time()
    import dataclasses

    from charnn import checkpoint as ckpt_io
    from charnn import corpora
    from charnn.commands.common import parse_duration, write_json
    from charnn.config import ModelConfig, TrainConfig
    from charnn.distributed import current, launched
    from charnn.progress import TrainReporter

    if launched() and "CHARNN_LAUNCHED_AT" in os.environ:
        started = float(os.environ["CHARNN_LAUNCHED_AT"])   # --nproc: the budget counts from its start
    if nproc is not None:
        code = _launch(ctx, nproc, corpus, out, resume, batch_size, quiet, started)
        if code is not None:     # None: --nproc 1, which is this process
            raise typer.Exit(code)
    group = current()            # this process's rank; a single process outside torchrun
    quiet = quiet or not group.is_main
    json_out = json_out and group.is_main
    reporter = TrainReporter(quiet=quiet)
    budget = parse_duration(time_budget)
    stop_flags = {k: v for k, v in dict(epochs=epochs, max_steps=max_steps, time_budget=budget).items()
                  if v is not None}

    resumed = None
    if resume is not None:
        resumed = group.main_first(lambda: ckpt_io.load(ckpt_io.checkpoint_in(
            resume, prefer=ckpt_io.LATEST))) if resume.is_dir() else None
        if resumed is None:
            raise CharnnError(f"--resume {resume}: not a charnn run folder")
        if "progress" not in resumed or "optimizer" not in resumed:
            raise CharnnError(f"--resume {resume}: the checkpoint holds no training state to resume")
        run_dir = resume
        corpus_arg = corpus or resumed.get("corpus", {}).get("path")
        if not corpus_arg:
            raise CharnnError("give the corpus to resume on: charnn train CORPUS --resume DIR", 2)
        model_cfg = ModelConfig.from_dict(resumed["model_config"])
        old = TrainConfig.from_dict(resumed["train_config"])
        # a resumed run keeps its model and data layout; only limits and the device may change
        overrides = {**stop_flags, **({"device": device} if device else {}),
                     **({"amp": amp} if amp is not None else {}),
                     **({"eval_every": eval_every} if eval_every else {})}
        if stop_flags:
            overrides = {"epochs": None, "max_steps": None, "time_budget": None, **overrides}
        train_cfg = dataclasses.replace(old, **overrides)
    else:
        corpus_arg = corpus or corpora.DEFAULT_CORPUS
        if corpus is None and not quiet:
            sys.stderr.write(f"no corpus given: training on the built-in '{corpus_arg}' corpus\n")
        if not stop_flags:
            stop_flags = {"time_budget": 300.0}
        tc = dict(seq_len=seq_len, batch_size=batch_size, lr=lr, grad_clip=grad_clip, warmup=warmup,
                  val_frac=val_frac, eval_every=eval_every, device=device, amp=amp, seed=seed)
        train_cfg = TrainConfig(**{k: v for k, v in tc.items() if v is not None}, **stop_flags,
                                **({"save_every": eval_every} if eval_every else {}))
    group.check_batch(train_cfg.batch_size, resumed=resumed is not None)

    from charnn.progress import DownloadBar

    def resolve():
        with DownloadBar(quiet) as bar:
            return corpora.resolve(corpus_arg, progress=bar)

    # rank 0 downloads (or spools stdin) first; the others find the file, or take rank 0's spool
    path = group.main_only(resolve) if corpus_arg == "-" else group.main_first(resolve)
    if resumed is None:
        run_dir = out or Path("checkpoints") / _run_name(corpus_arg, path)

        def check_fresh():
            if (run_dir / ckpt_io.LATEST).exists() and not (force or dry_run):
                raise CharnnError(f"{run_dir} already holds a run: continue it with --resume "
                                  f"{run_dir}, pick another --out, or start afresh with --force")

        group.main_only(check_fresh)
    group.hint = (f"the last checkpoint in {run_dir} is intact: continue with "
                  f"charnn train --resume {run_dir}")

    from charnn.train import prepare_data, train

    tok_obj = None
    if resumed is not None:
        from charnn.tokenizers import tokenizer_from_dict
        tok_obj = tokenizer_from_dict(resumed["tokenizer"])
        digest = resumed.get("corpus", {}).get("digest")
        from charnn.data import file_digest
        if digest and file_digest(path) != digest:
            raise CharnnError(f"{path} is not the corpus this run was trained on (its content changed)")
    fit_options = {k: v for k, v in dict(vocab_size=vocab_size, min_count=min_count,
                                         max_vocab=max_vocab).items() if v is not None}
    # rank 0 encodes the corpus into the cache, then the others read it from there
    data = group.main_first(lambda: prepare_data(path, tokenizer, train_cfg.val_frac, fit_options,
                                                 tokenizer=tok_obj))
    if group.distributed:
        # the ranks must see one vocabulary (a cache that nodes do not share is refitted per node)
        tok0 = group.broadcast(data.tokenizer.to_dict())
        if tok0 != data.tokenizer.to_dict():
            from charnn.tokenizers import tokenizer_from_dict

            data = prepare_data(path, tokenizer, train_cfg.val_frac, fit_options,
                                tokenizer=tokenizer_from_dict(tok0))
    from charnn.inputs import setup_input

    if doc_sep is not None:
        doc_sep = doc_sep.replace("\\n", "\n").replace("\\t", "\t")
    inp = setup_input(data, input, vectors, embed_dim, freeze_embeddings, doc_sep, max_vocab,
                      min_count, resumed, train_cfg.seed)
    for m in inp.messages:
        if group.is_main and (not quiet or m.startswith("warning")):
            sys.stderr.write(m + "\n")
    if resumed is None:
        mc = dict(cell=cell, layers=layers, hidden=hidden, embed_dim=embed_dim, dropout=dropout,
                  tie_weights=tie_weights)
        mc.update(inp.model_options)   # e.g. word2vec sets embed_dim from the vectors
        if train_cfg.time_budget is not None and train_cfg.max_steps is None and train_cfg.epochs is None:
            # only the clock limits the run: choose the size and schedule that learn most in it
            from charnn import autosize
            from charnn.train import pick_device

            fixed = {**{k: v for k, v in mc.items() if k in ("layers", "hidden", "embed_dim", "dropout")},
                     **{k: v for k, v in tc.items() if k in ("batch_size", "seq_len", "lr", "warmup")}}
            remaining = train_cfg.time_budget - (time.time() - started)
            # rank 0 calibrates (the others would only compete with it for the machine)
            plan = group.main_only(lambda: autosize.plan(
                remaining, len(data.train_ids), data.tokenizer.vocab_size,
                group.device(pick_device(train_cfg.device)), fixed, cell or "lstm"))
            if dry_run:
                if not group.is_main:
                    return
                if json_out:
                    write_json(plan.to_dict())
                else:
                    sys.stdout.write(autosize.describe(plan) + "\n")
                return
            if not quiet:
                sys.stderr.write(autosize.describe(plan) + "\n")
            mc.update(layers=plan.layers, hidden=plan.hidden, embed_dim=plan.embed_dim, dropout=plan.dropout)
            train_cfg = dataclasses.replace(train_cfg, batch_size=plan.batch_size, seq_len=plan.seq_len,
                                            lr=plan.lr, warmup=plan.warmup)
            group.check_batch(train_cfg.batch_size)
        model_cfg = ModelConfig(vocab_size=data.tokenizer.vocab_size,
                                **{k: v for k, v in mc.items() if v is not None})
        if dry_run:
            if not group.is_main:
                return
            d = {"model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
                 "why": "fixed limits (--max-steps/--epochs) or flags: defaults and flags as given"}
            if json_out:
                write_json(d)
            else:
                sys.stdout.write(f"model  {model_cfg}\ntrain  {train_cfg}\nwhy    {d['why']}\n")
            return

    with group.main_holds(ckpt_io.RunLock(run_dir)):    # one writer: rank 0
        summary = train(model_cfg, train_cfg, data, run_dir, callback=reporter, resume=resumed,
                        started=started, init_model=inp.init_model, group=group)
    reporter.close()
    if not quiet:
        _print_summary(summary)
    if json_out:
        write_json(summary)
    if summary["interrupted"]:
        if group.is_main:
            sys.stderr.write(f"stopped at step {summary['steps']}; continue with: "
                             f"charnn train --resume {run_dir}\n")
        raise typer.Exit(130)


def _launch(ctx: typer.Context, nproc: int, corpus: Optional[str], out: Optional[Path],
            resume: Optional[Path], batch_size: Optional[int], quiet: bool,
            started: float) -> Optional[int]:
    """`--nproc N`: start this same command on N ranks through torch.distributed.run and return
    their exit status. What only this process can do happens here first: reading stdin, and
    downloading a catalog corpus (once, with one progress bar)."""
    from charnn import corpora, distributed
    from charnn.progress import DownloadBar

    if nproc < 1:
        raise CharnnError("--nproc must be at least 1", 2)
    if nproc == 1:
        return None
    if batch_size is not None:
        distributed.Group(0, nproc).check_batch(batch_size)
    replace: dict[str, Optional[str]] = {}
    if corpus == "-":
        from charnn.data import spool_stdin

        replace["corpus"] = str(spool_stdin())       # the ranks cannot all read one stdin
        if out is None and resume is None:
            replace["out"] = str(Path("checkpoints") / "stdin")
    elif corpus is not None or resume is None:
        with DownloadBar(quiet) as bar:
            corpora.resolve(corpus or corpora.DEFAULT_CORPUS, progress=bar)
    os.environ["CHARNN_LAUNCHED_AT"] = repr(started)     # the ranks inherit it
    return distributed.launch(nproc, ["train", *_command_line(ctx, replace, drop=("nproc",))])


def _command_line(ctx: typer.Context, replace: dict[str, Optional[str]], drop=()) -> list[str]:
    """The options and arguments given to this command, as a command line: what the user typed
    (defaults stay defaults), with `replace`d values and without the `drop`ped options."""
    given = ("COMMANDLINE", "ENVIRONMENT")      # click's ParameterSource names
    opts: list[str] = []
    args: list[str] = []
    for p in ctx.command.params:
        if p.name in drop:
            continue
        if p.name in replace:
            value = replace[p.name]
        elif getattr(ctx.get_parameter_source(p.name), "name", None) in given:
            value = ctx.params[p.name]
        else:
            continue
        if p.param_type_name == "argument":
            text = str(value)
            args.append(os.path.join(".", text) if text.startswith("-") and text != "-" else text)
            continue
        name = next((o for o in p.opts if o.startswith("--")), p.opts[0])
        if p.is_flag:
            if p.secondary_opts:
                opts.append(name if value else p.secondary_opts[0])
            elif value:
                opts.append(name)
        else:
            opts += [name, str(value)]
    return args + opts


def _run_name(arg: str, path: Path) -> str:
    from charnn.corpora import CATALOG

    if arg == "-":
        return "stdin"
    return arg if arg in CATALOG else (path.stem or "run")


def _print_summary(s: dict) -> None:
    from charnn.commands.common import fmt_duration

    if "val_nats_per_char" in s:
        sys.stderr.write(
            f"done: {s['steps']} steps in {fmt_duration(s['elapsed'])}; val {s['val_nats_per_char']:.4f} "
            f"nats/char ({s['val_bpc']:.4f} bits/char, best {s['best_val_bpc']:.4f}); "
            f"sample with: charnn sample {s['run_dir']}\n")

