"""charnn sample: generate text from a trained model, streamed to stdout.

Four ways to generate, one function each: a stream of text (the default; --prompts runs many
primes as one batch), whole documents (--docs N), and beam search (--beam K).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Optional

import typer

Opt = typer.Option

# Streamed text is flushed at most this often (and at the end): a write per character would cost
# a system call per character, while 1/50 s batches are still smooth to watch.
FLUSH_EVERY = 0.02
PROMPT_STREAMS = 64      # --prompts: streams generated side by side


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    app.command(
        "sample",
        help="Generate text from a trained model and stream it to stdout. RUN is a run folder, a "
        "checkpoint file or a run name under checkpoints/ (default: the newest run). The prime "
        "comes from --prime or from piped stdin.\n\n"
        "Example: charnn sample --temp 0.8 --prime 'ROMEO:' --length 500 | less\n\n"
        "Documents: charnn sample checkpoints/names --docs 20 --novel-only",
    )(guard(sample_cmd))


@dataclass
class Job:
    """What every way of generating needs: the loaded run, the settings, where text goes."""

    path: Any
    ckpt: dict
    model: Any
    tok: Any
    cfg: Any                 # SampleConfig
    cond: Any                # --input bow conditioning, or None
    device: Any
    quantize: str
    separator: str
    echo: bool
    json_out: bool


def sample_cmd(
    run: Optional[str] = typer.Argument(None, help="Run folder or checkpoint. [default: newest under checkpoints/]"),
    temp: float = Opt(1.0, "--temp", "-t", help="Temperature: lower is safer, higher is wilder; 0 is greedy."),
    length: int = Opt(1000, "--length", "-n", help="Tokens to generate (characters for char models); with "
                      "--docs, the most a document may take (a longer one is dropped)."),
    prime: Optional[str] = Opt(None, "--prime", "-p",
                               help="Text to start from (echoed first). [default: piped stdin, else none]"),
    top_k: int = Opt(0, help="Sample only from the K likeliest tokens (0: off)."),
    top_p: float = Opt(1.0, help="Sample only from the smallest set of tokens holding this much probability (1: off)."),
    seed: Optional[int] = Opt(None, help="Random seed: the same seed gives the same text; with --num-samples, "
                              "sample i is the text --seed SEED+i gives alone (in fp32). [default: random]"),
    stop: Optional[str] = Opt(None, help="Stop a sample when this text appears (not printed; \\n, \\t, \\xNN, "
                              "\\uNNNN escapes work)."),
    num_samples: int = Opt(1, help="Samples to generate, as one batch; printed one after another "
                           "(with --prompts: per prompt; with --beam: the best N)."),
    separator: Optional[str] = Opt(None, help="Printed between samples (escapes as --stop).  [default: a blank line; with "
                                   "--docs, the run's document separator]"),
    topic: Optional[str] = Opt(None, help="Models trained with --input bow: words to write about, e.g. 'war soldier battle'."),
    quantize: str = Opt("none", help="none, or int8: the recurrent and output weights in int8 (CPU; about "
                        "twice as fast, a little less accurate: see `charnn eval --quantize`)."),
    threads: int = Opt(1, help="CPU threads. At batch 1 a step is a chain of small matrix-vector products "
                       "that a second thread slows down; more can help a large --num-samples."),
    device: str = Opt("cpu", help="cpu, cuda or auto."),
    json_out: bool = Opt(False, "--json", help="One JSON object per sample on stdout instead of text."),
    docs: Optional[int] = Opt(None, "--docs", metavar="N", help="Print N whole documents, each ending where "
                              "the model ends it (models trained with --docs).  [default: off]"),
    novel_only: bool = Opt(False, "--novel-only", help="With --docs: drop documents that are in the "
                           "training text, verbatim."),
    prompts: Optional[str] = Opt(None, "--prompts", metavar="FILE", help="One prime per line (- for "
                                 "stdin), sampled as one batch; one result per prompt, in order."),
    no_echo: bool = Opt(False, "--no-echo", help="Leave the prime (or prompt) out of the output."),
    logprobs: int = Opt(0, "--logprobs", metavar="N", help="With --json: each sampled token with its "
                        "log-probability under the model and the N likeliest alternatives (0: off)."),
    beam: Optional[int] = Opt(None, "--beam", metavar="K", help="Beam search with K beams: the likeliest "
                              "continuation (length-normalised, deterministic; 1 is greedy) instead of a "
                              "sample; --temp, --top-k and --top-p do not apply.  [default: off]"),
):
    check_options(threads, beam, logprobs, json_out, docs, novel_only, prompts, prime, num_samples, device)
    texts = read_prompts(prompts) if prompts is not None else None
    if prime is None and texts is None and not sys.stdin.isatty():
        prime = sys.stdin.read()
    from charnn.commands.common import unescape

    stop = unescape(stop) if stop else stop
    separator = unescape(separator) if separator is not None else None
    job = open_job(run, prime, temp, length, top_k, top_p, stop, num_samples, seed, topic, quantize,
                   threads, device, separator, json_out, docs, not no_echo)
    if beam is not None:
        return sample_beam(job, beam, docs, texts)
    if docs is not None:
        return sample_docs(job, docs, novel_only)
    if texts is not None:
        return sample_prompts(job, texts, logprobs)
    return sample_stream(job, logprobs)


def check_options(threads, beam, logprobs, json_out, docs, novel_only, prompts, prime, num_samples,
                  device) -> None:
    from charnn.errors import CharnnError

    rules = [
        ((docs is None and beam is None) or device == "cpu", "--docs and --beam run on the CPU (leave --device out)"),
        (threads >= 1, "--threads must be at least 1"),
        (beam is None or beam >= 1, "--beam must be at least 1"),
        (beam is None or docs is not None or num_samples <= beam,
         f"--num-samples {num_samples}: beam search finds at most --beam {beam} results"),
        (docs is None or docs >= 1, "--docs must be at least 1"),
        (logprobs >= 0, "--logprobs must be >= 0"),
        (not logprobs or json_out, "--logprobs goes with --json (per-token results are data)"),
        (not logprobs or (docs is None and beam is None), "--logprobs goes with sampling text "
         "(not --docs or --beam; `charnn score --tokens` scores any text)"),
        (not novel_only or docs is not None, "--novel-only goes with --docs N"),
        (prompts is None or prime is None, "--prompts and --prime both give the prime: choose one"),
        (prompts is None or docs is None, "--prompts goes with text samples, not --docs"),
    ]
    for ok, message in rules:
        if not ok:
            raise CharnnError(message, 2)


def read_prompts(path: str) -> list[str]:
    """--prompts FILE: one prime per line; an empty line is an error (it would be no prompt)."""
    from charnn.errors import CharnnError

    if path == "-":
        text = sys.stdin.read()
    else:
        from pathlib import Path

        from charnn.data import iter_text

        text = "".join(iter_text(Path(path)))
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()                      # the file's last line break ends a line, starts none
    lines = [line.rstrip("\r") for line in lines]
    if not lines:
        raise CharnnError(f"--prompts {path}: no prompts in it", 2)
    for n, line in enumerate(lines, 1):
        if not line:
            raise CharnnError(f"--prompts {path}: line {n} is empty (each line is a prompt)", 2)
    return lines


def open_job(run, prime, temp, length, top_k, top_p, stop, num_samples, seed, topic, quantize,
             threads, device, separator, json_out, docs, echo) -> Job:
    """Check the settings, load the run and prepare what every way of generating needs."""
    import torch

    from charnn.commands.common import load_model
    from charnn.config import SampleConfig
    from charnn.sampling import quantize as q
    from charnn.sampling.generate import encode_prime

    cfg = SampleConfig(length=length, temperature=temp, top_k=top_k, top_p=top_p, prime=prime or "",
                       stop=stop, num_samples=num_samples, seed=seed)
    dev = torch.device("cpu")
    if device != "cpu":
        from charnn.machine import pick_device

        dev = pick_device(device)
    quantize = q.check(quantize, dev)
    torch.set_num_threads(threads)
    path, ckpt, model, tok = load_model(run, mmap=True)
    encode_prime(tok, cfg.prime)  # unknown prime characters fail before anything is printed
    model.to(dev)
    cond = None
    if topic is not None or model.cfg.input == "bow":
        from charnn.representations.bow import topic_cond

        cond = topic_cond(ckpt, model, topic).to(dev)                          # (1, bow_dim)
    if separator is None:
        from charnn.checkpoint import docs_mode
        from charnn.documents import SEPARATORS

        separator = SEPARATORS[docs_mode(ckpt)] if docs is not None and docs_mode(ckpt) else "\n\n"
    return Job(path, ckpt, model, tok, cfg, cond, dev, quantize, separator, echo, json_out)


def eod_text(job: Job) -> str:
    """What stands for the end of a document in a stream of text: the run's separator."""
    from charnn.checkpoint import docs_mode
    from charnn.documents import SEPARATORS

    return SEPARATORS.get(docs_mode(job.ckpt) or "", "\n")


def sample_stream(job: Job, logprobs: int = 0) -> None:
    """The default: --num-samples streams, stream 0 printed as it comes, the others after it."""
    from charnn.sampling.generate import generate

    cfg, out, n = job.cfg, sys.stdout, job.cfg.num_samples
    live = not job.json_out
    log = None
    if logprobs:
        from charnn.sampling.logprobs import TokenLog

        log = TokenLog(job.tok, n, logprobs)
    head = cfg.prime if job.echo else ""
    kept = [[] for _ in range(n)]     # stream 0 is printed as it comes; the others (all for --json) kept
    first_kept = 0 if job.json_out else 1
    if live:
        out.write(head)
        out.flush()
    last, tail = float("-inf"), head          # the first piece is flushed at once
    for pieces in generate(job.model, job.tok, cfg, cond=job.cond, device=job.device,
                           quantize=job.quantize, eod_text=eod_text(job), observe=log):
        if live and pieces[0]:
            out.write(pieces[0])
            tail = pieces[0]
            now = time.monotonic()
            if now - last >= FLUSH_EVERY:
                out.flush()
                last = now
        for k, p in zip(kept[first_kept:], pieces[first_kept:]):
            k.append(p)
    texts = [head + "".join(k) for k in kept]
    if job.json_out:
        from charnn.commands.common import write_json

        for i, t in enumerate(texts):
            write_json({"sample": i, "text": t, "checkpoint": str(job.path),
                        **({"tokens": log.records[i]} if log else {})})
        return
    for t in texts[1:]:
        out.write(job.separator + t)
    if not (texts[-1] if n > 1 else tail).endswith("\n"):
        out.write("\n")
    out.flush()


def sample_prompts(job: Job, prompts: list[str], logprobs: int = 0) -> None:
    """--prompts: --num-samples streams per prompt, PROMPT_STREAMS side by side; the results in
    the prompts' order, each printed when its batch is done. Stream i of all (prompt i // n,
    sample i % n) draws with seed + i."""
    import dataclasses
    import secrets

    from charnn.commands.common import write_json
    from charnn.sampling.generate import generate

    n = job.cfg.num_samples
    streams = [p for p in prompts for _ in range(n)]
    seed = job.cfg.seed if job.cfg.seed is not None else secrets.randbits(60)
    step = max(n, PROMPT_STREAMS // n * n)        # whole prompts per batch
    for at in range(0, len(streams), step):
        batch = streams[at:at + step]
        cfg = dataclasses.replace(job.cfg, seed=seed + at, num_samples=len(batch))
        log = None
        if logprobs:
            from charnn.sampling.logprobs import TokenLog

            log = TokenLog(job.tok, len(batch), logprobs)
        kept = [[] for _ in batch]
        for pieces in generate(job.model, job.tok, cfg, cond=job.cond, device=job.device,
                               quantize=job.quantize, primes=batch, eod_text=eod_text(job), observe=log):
            for k, p in zip(kept, pieces):
                k.append(p)
        for i, (p, k) in enumerate(zip(batch, kept)):
            text = (p if job.echo else "") + "".join(k)
            if job.json_out:
                write_json({"prompt": p, "sample": (at + i) % n, "text": text, "checkpoint": str(job.path),
                            **({"tokens": log.records[i]} if log else {})})
            else:
                sys.stdout.write(("" if at + i == 0 else job.separator) + text)
        sys.stdout.flush()
    if not job.json_out:
        sys.stdout.write("\n")


def sample_docs(job: Job, count: int, novel_only: bool) -> None:
    """--docs N: N whole documents, each printed as soon as it ends."""
    from charnn.commands.common import write_json
    from charnn.sampling.docs import DocumentSampler, training_fingerprints

    fps = training_fingerprints(job.ckpt) if novel_only else None
    sampler = DocumentSampler(job.model, job.tok, job.cfg, count, fps, job.cond, job.quantize)
    made = 0
    for made, doc in enumerate(sampler, 1):
        text = doc.text if job.echo else doc.text[len(job.cfg.prime):]
        if job.json_out:
            write_json({"doc": made - 1, "text": text, "tokens": doc.tokens, "logprob": doc.logprob})
        else:
            sys.stdout.write(text + job.separator)
            sys.stdout.flush()
    report_docs(sampler, made, count)


def report_docs(sampler, made: int, count: int) -> None:
    """What was dropped, on stderr."""
    notes = []
    if sampler.known:
        notes.append(f"dropped {sampler.known:,} that are in the training text")
    if sampler.too_long:
        notes.append(f"dropped {sampler.too_long:,} that did not end within --length {sampler.cfg.length:,} tokens")
    if made < count:
        sys.stderr.write(f"warning: only {made:,} of {count:,} documents after drawing {sampler.drawn:,} ("
                         + "; ".join(notes) + ")\n")
    elif notes and sampler.known:
        sys.stderr.write(f"{'; '.join(notes)}\n")


def sample_beam(job: Job, beam: int, docs: int | None, prompts: list[str] | None) -> None:
    """--beam K: the best --num-samples (or --docs N) hypotheses of each prime."""
    from charnn.commands.common import write_json
    from charnn.errors import CharnnError
    from charnn.sampling.beam import beam_search, text_of

    keep = docs if docs is not None else job.cfg.num_samples
    if docs is not None and job.tok.eod_id is None:
        raise CharnnError("--docs: this model was not trained on documents (charnn train --docs)")
    if keep > beam:
        raise CharnnError(f"--docs {keep}: beam search finds at most --beam {beam} documents", 2)
    printed = 0
    for p in prompts if prompts is not None else [job.cfg.prime]:
        found = beam_search(job.model, job.tok, p, beam, job.cfg.length, job.cfg.stop, job.cond, keep)
        for i, h in enumerate(found):
            text = (p if job.echo else "") + text_of(job.tok, h, job.cfg.stop)
            if job.json_out:
                write_json({**({"prompt": p} if prompts is not None else {}), "sample": i, "text": text,
                            "logprob": h.logprob, "tokens": len(h.ids), "score": h.score,
                            "finished": h.finished})
            else:
                sys.stdout.write(("" if printed == 0 else job.separator) + text)
            printed += 1
    if not job.json_out:
        sys.stdout.write("\n")
