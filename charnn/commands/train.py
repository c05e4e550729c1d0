"""charnn train: fit a recurrent language model to a corpus."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from charnn.errors import CharnnError

Opt = typer.Option


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard
    from charnn.commands.nproc import in_session

    app.command(
        "train",
        help="Train an LSTM/GRU/RNN language model on CORPUS: a text file, - for stdin, or a "
        "catalog name (default: lee, which ships with gensim).\n\n"
        "Example: charnn train corpus.txt --time-budget 10m\n\n"
        "Several processes (data-parallel): charnn train corpus.txt --nproc 2, or "
        "torchrun --nproc-per-node 2 -m charnn train corpus.txt",
    )(guard(in_session(train_cmd)))


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
    tokenizer: Optional[str] = Opt(None, help="char, byte, word, bpe or unigram. [default: char]"),
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
    seq_len: Optional[int] = Opt(None, help="Steps per chunk of truncated BPTT. [default: 64]"),
    batch_size: Optional[int] = Opt(None, help="Parallel streams per step; the global batch, shared out over the processes of a distributed run. [default: 32]"),
    lr: Optional[float] = Opt(None, help="Peak learning rate of AdamW. [default: 0.005]"),
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
    params = dict(locals())
    del params["ctx"], params["nproc"]
    started = time.time()
    from charnn.training.distributed import launched

    if launched() and "CHARNN_LAUNCHED_AT" in os.environ:
        started = float(os.environ["CHARNN_LAUNCHED_AT"])   # --nproc: the budget counts from its start
    if nproc is not None:
        from charnn.commands.nproc import launch

        code = launch(ctx, nproc, corpus, out, resume, batch_size, quiet, started)
        if code is not None:     # None: --nproc 1, which is this process
            raise typer.Exit(code)
    with contextlib.ExitStack() as stack:   # holds the run folder's lock, once it is known
        return _train(stack, started, **params)


# flags a resumed run may change; the others must be left out or repeat the run's values
RESUME_MAY_CHANGE = ("epochs", "max_steps", "time_budget", "eval_every", "device", "amp")
# flags that only shape a new run's vocabulary and inputs: nothing to compare them with later
FIT_ONLY = ("vocab_size", "min_count", "max_vocab", "vectors", "doc_sep")


def _train(stack, started, *, corpus, out, cell, layers, hidden, embed_dim, dropout, tie_weights,
           tokenizer, vocab_size, min_count, max_vocab, input, vectors, freeze_embeddings, doc_sep,
           seq_len, batch_size, lr, grad_clip, warmup, epochs, max_steps, time_budget, val_frac,
           eval_every, device, amp, seed, resume, force, dry_run, quiet, json_out):
    import dataclasses

    from charnn import checkpoint as ckpt_io
    from charnn import corpora
    from charnn.commands.common import write_json
    from charnn.commands.progress import TrainReporter
    from charnn.config import ModelConfig, TrainConfig, parse_duration
    from charnn.training.distributed import current

    group = current()            # this process's rank; a single process outside torchrun
    quiet = quiet or not group.is_main
    json_out = json_out and group.is_main
    reporter = TrainReporter(quiet=quiet)
    budget = parse_duration(time_budget)
    stop_flags = {k: v for k, v in dict(epochs=epochs, max_steps=max_steps, time_budget=budget).items()
                  if v is not None}

    resumed = None
    if resume is not None:
        if force:
            raise CharnnError("--force starts a run afresh; it cannot go with --resume", 2)
        if out is not None and Path(out).resolve() != Path(resume).resolve():
            raise CharnnError(f"--out {out} differs from --resume {resume}: a resumed run stays in its folder", 2)
        if not resume.is_dir():
            raise CharnnError(f"--resume {resume}: not a charnn run folder"
                              f"{'' if resume.exists() else ' (no such folder)'}")
        run_dir = resume
        if not dry_run:   # lock first: a run in progress is named, and the checkpoint read is final
            stack.enter_context(group.main_holds(ckpt_io.RunLock(run_dir)))    # one writer: rank 0
        ckpt_path = ckpt_io.checkpoint_in(resume, prefer=ckpt_io.LATEST)
        resumed = group.main_first(lambda: ckpt_io.load(ckpt_path))
        ckpt_io.check_resumable(resumed, ckpt_path)
        ckpt_io.build_model(resumed)     # the weights fit the model and are finite
        model_cfg, old = ckpt_io.configs(resumed)
        _check_resume_flags(resumed, model_cfg, old, dict(
            cell=cell, layers=layers, hidden=hidden, embed_dim=embed_dim, dropout=dropout,
            tie_weights=tie_weights, tokenizer=tokenizer, input=input,
            freeze_embeddings=freeze_embeddings or None, seq_len=seq_len, batch_size=batch_size,
            lr=lr, grad_clip=grad_clip, warmup=warmup, val_frac=val_frac, seed=seed,
            vocab_size=vocab_size, min_count=min_count, max_vocab=max_vocab, vectors=vectors,
            doc_sep=doc_sep))
        corpus_arg = corpus or resumed.get("corpus", {}).get("path")
        if not corpus_arg:
            raise CharnnError("give the corpus to resume on: charnn train CORPUS --resume DIR", 2)
        # a resumed run keeps its model and data layout; only limits and the device may change
        overrides = {**stop_flags, **({"device": device} if device else {}),
                     **({"amp": amp} if amp is not None else {}),
                     **({"eval_every": eval_every} if eval_every else {})}
        if stop_flags:
            overrides = {"epochs": None, "max_steps": None, "time_budget": None, **overrides}
        train_cfg = dataclasses.replace(old, **overrides)
        if dry_run:
            if not group.is_main:
                return
            d = {"model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
                 "why": f"resuming {run_dir} from step {resumed['progress']['step']}"}
            if json_out:
                write_json(d)
            else:
                sys.stdout.write(f"model  {model_cfg}\ntrain  {train_cfg}\nwhy    {d['why']}\n")
            return
    else:
        corpus_arg = corpus or corpora.DEFAULT_CORPUS
        if corpus is None and not quiet:
            sys.stderr.write(f"no corpus given: training on the built-in '{corpus_arg}' corpus\n")
        if not stop_flags:
            stop_flags = {"time_budget": 300.0}
        tc = dict(seq_len=seq_len, batch_size=batch_size, lr=lr, grad_clip=grad_clip, warmup=warmup,
                  val_frac=val_frac, eval_every=eval_every, device=device, amp=amp, seed=seed)
        train_cfg = TrainConfig(**{k: v for k, v in tc.items() if v is not None}, **stop_flags)
    group.check_batch(train_cfg.batch_size, resumed=resumed is not None)

    from charnn.commands.progress import DownloadBar

    def resolve():
        with DownloadBar(quiet) as bar:
            return corpora.resolve(corpus_arg, progress=bar)

    # rank 0 downloads (or spools stdin) first; the others find the file, or take rank 0's spool
    path = group.main_only(resolve) if corpus_arg == "-" else group.main_first(resolve)
    if resumed is None:
        run_dir = out or Path("checkpoints") / _run_name(corpus_arg, path)
        if not dry_run:   # one writer per folder (rank 0), from this check until training ends
            stack.enter_context(group.main_holds(ckpt_io.RunLock(run_dir)))

        def check_fresh():
            if (run_dir / ckpt_io.LATEST).exists() and not (force or dry_run):
                raise CharnnError(f"{run_dir} already holds a run: continue it with --resume "
                                  f"{run_dir}, pick another --out, or start afresh with --force")

        group.main_only(check_fresh)
    group.hint = (f"the last checkpoint in {run_dir} is intact: continue with "
                  f"charnn train --resume {run_dir}")

    from charnn.training.dataset import prepare_data
    from charnn.training.trainer import train

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
    tok_name = tok_obj.name if tok_obj is not None else (tokenizer or "char")
    # rank 0 encodes the corpus into the cache, then the others read it from there
    data = group.main_first(lambda: prepare_data(path, tok_name, train_cfg.val_frac, fit_options,
                                                 tokenizer=tok_obj))
    if group.distributed:
        # the ranks must see one vocabulary (a cache that nodes do not share is refitted per node)
        from charnn.tokenizers import tokenizer_from_dict

        tok0 = group.broadcast(data.tokenizer.to_dict())
        if tok0 != data.tokenizer.to_dict():
            data = prepare_data(path, tok_name, train_cfg.val_frac, fit_options,
                                tokenizer=tokenizer_from_dict(tok0))
    from charnn.representations.inputs import setup_input

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
            from charnn.machine import pick_device
            from charnn.training import autosize

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

    if force and resumed is None:
        # afresh: the old run's checkpoints and metrics go, so none of them is mistaken for this run's
        group.main_only(lambda: _clear_run(run_dir))
    summary = train(model_cfg, train_cfg, data, run_dir, callback=reporter, resume=resumed,
                    started=started, init_model=inp.init_model, group=group)
    reporter.close()
    if not quiet:
        _print_summary(summary)
    if json_out:
        write_json(summary)
    if summary.get("diverged"):
        raise CharnnError(summary["diverged"])
    if summary["interrupted"]:
        if group.is_main:
            sys.stderr.write(f"stopped at step {summary['steps']}; continue with: "
                             f"charnn train --resume {run_dir}\n")
        raise typer.Exit(130)


def _check_resume_flags(ckpt: dict, model_cfg, train_cfg, given: dict) -> None:
    """A resumed run keeps its model, tokenizer and data layout: a flag given with --resume
    must repeat the run's value (so a command retyped with --resume added works), never
    silently change nothing."""
    run = {**train_cfg.to_dict(), **model_cfg.to_dict(), "tokenizer": ckpt["tokenizer"]["name"]}
    for name, value in given.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if name in FIT_ONLY:
            raise CharnnError(f"{flag} only applies when a run starts; a resumed run keeps its "
                              "vocabulary and inputs (leave it out)", 2)
        if run.get(name) != value:
            raise CharnnError(
                f"{flag} {value} differs from the run's {run.get(name)}: a resumed run keeps its "
                f"model, tokenizer and data layout (leave {flag} out; only "
                f"{', '.join('--' + f.replace('_', '-') for f in RESUME_MAY_CHANGE)} may change)", 2)


def _clear_run(run_dir: Path) -> None:
    from charnn import checkpoint as ckpt_io

    for name in (ckpt_io.LATEST, ckpt_io.BEST, "metrics.jsonl"):
        (run_dir / name).unlink(missing_ok=True)


def _run_name(arg: str, path: Path) -> str:
    from charnn.corpora import CATALOG

    if arg == "-":
        return "stdin"
    if arg in CATALOG:
        return arg
    stem = path.stem.lstrip(".")    # never "..": the run folder stays under checkpoints/
    return stem or "run"


def _print_summary(s: dict) -> None:
    from charnn.commands.common import fmt_duration

    if "val_nats_per_char" in s:
        sys.stderr.write(
            f"done: {s['steps']} steps in {fmt_duration(s['elapsed'])}; val {s['val_nats_per_char']:.4f} "
            f"nats/char ({s['val_bpc']:.4f} bits/char, best {s['best_val_bpc']:.4f}); "
            f"sample with: charnn sample {s['run_dir']}\n")

