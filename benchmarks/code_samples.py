"""Why a char model of Python source samples runs of spaces (issue 17), measured.

Given a trained run and its corpus, prints:
  1. the corpus: P(another space | n spaces so far) for n = 1..60, counted on the validation
     split (the hazard of a run of spaces: indentation comes in 4s, aligned continuation lines
     make long runs);
  2. the model: its mean P(space) at those positions (teacher-forced on the same text), and
     what temperature T makes of it (p^(1/T), renormalised);
  3. samples after a prime, N of them per setting: the longest run of spaces, the share of
     characters in runs longer than 24, and the share of lines that parse as Python alone or
     within their block (`compile` of the sample's lines cut at the first that fails).

    .venv/bin/python benchmarks/code_samples.py RUN CORPUS --prime 'def ' --temps 0.7 1.0
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NS = [1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 28, 32, 40, 50, 60]


def corpus_hazard(text: str) -> dict[int, float]:
    """n -> P(the run goes on | n spaces so far), from the lengths of the runs in `text`."""
    runs = collections.Counter(len(m.group()) for m in re.finditer(r" +", text))
    out = {}
    for n in NS:
        at_least = sum(v for k, v in runs.items() if k >= n)
        longer = sum(v for k, v in runs.items() if k > n)
        out[n] = longer / at_least if at_least else float("nan")
    return out


def model_hazard(model, tok, text: str, temps: list[float]) -> dict[int, dict[float, float]]:
    """n -> {T: mean P(space) under temperature T} at the positions that follow n spaces."""
    import torch

    ids = torch.tensor(tok.encode(text)).unsqueeze(0)
    space = tok.id_of(" ")
    with torch.no_grad():
        logits, _ = model.eval()(ids[:, :-1])                      # (1, L-1, V)
    run, sums, counts = 0, collections.defaultdict(lambda: collections.defaultdict(float)), collections.Counter()
    chars = text[:-1]
    probs = {T: torch.softmax(logits[0].float() / T, -1)[:, space] for T in [1.0, *temps]}
    for i, c in enumerate(chars):
        run = run + 1 if c == " " else 0
        if run in NS:
            counts[run] += 1
            for T, p in probs.items():
                sums[run][T] += float(p[i])
    return {n: {T: sums[n][T] / counts[n] for T in probs} for n in NS if counts[n]}


def sample_stats(samples: list[str]) -> dict[str, float]:
    runs = [max((len(m.group()) for m in re.finditer(r" +", s)), default=0) for s in samples]
    long_share = sum(sum(len(m.group()) for m in re.finditer(r" {25,}", s)) for s in samples) / \
        max(1, sum(len(s) for s in samples))
    return {"longest_run_max": max(runs), "longest_run_mean": sum(runs) / len(runs),
            "share_in_runs_over_24": long_share, "parsable_line_share": sum(map(parsable, samples)) / len(samples)}


def parsable(sample: str) -> float:
    """The share of the sample's lines in its longest prefix that compiles as a module (a sample
    that drifts into nonsense stops compiling there; a cut block counts against it too)."""
    lines = sample.splitlines()
    best = 0
    for k in range(len(lines), 0, -1):
        try:
            compile("\n".join(lines[:k]) + "\n", "<sample>", "exec")
            best = k
            break
        except SyntaxError:
            continue
    return best / max(1, len(lines))


def start_comparison(run, n: int = 16, length: int = 300) -> None:
    """How the first characters after a prime depend on the state it is read from: a zero state
    (the prime alone) or after a line break (the prime after "\n"), at a few settings. (Since
    issue 17 charnn itself reads every prime after a line break, so the zero-state rows are
    made by giving the model the prime directly, as charnn did before.)"""
    import torch

    from charnn.sampling.generate import Picker

    def sample(prime: str, seed: int, temperature: float, top_p: float) -> str:
        ids = run.tokenizer.encode(prime)
        picker = Picker(1, run.tokenizer.vocab_size, temperature, 0, top_p, seed)
        with torch.no_grad():
            logits, state = run.model(torch.as_tensor(ids).long()[None])
            out = []
            for _ in range(length):
                nxt = picker(logits[:, -1].float())
                out.append(int(nxt[0]))
                logits, state = run.model(nxt.view(1, 1), state)
        return run.tokenizer.decode(out)

    for prime in ("def ", "\ndef "):
        for T, top_p in ((0.7, 1.0), (1.0, 1.0), (1.0, 0.9), (0.7, 0.9)):
            bodies = [sample(prime, i, T, top_p) for i in range(n)]
            ident = sum(b[:1].isalpha() or b[:1] == "_" for b in bodies)
            runs = [max((len(m.group()) for m in re.finditer(r" +", b)), default=0) for b in bodies]
            print(f"state {'zero' if prime == 'def ' else 'after a line break':<20} T={T:g} top-p={top_p:g}: "
                  f"{ident}/{n} continue with an identifier; longest run of spaces mean "
                  f"{sum(runs) / n:.1f}, max {max(runs)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--prime", default="def ")
    ap.add_argument("--temps", type=float, nargs="+", default=[0.7, 1.0])
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--length", type=int, default=600)
    ap.add_argument("--hazard-chars", type=int, default=200_000, help="validation characters read for 1-2")
    ap.add_argument("--show", type=int, default=1, help="samples printed per setting")
    ap.add_argument("--start", action="store_true", help="only compare the zero state with a line break before the prime")
    a = ap.parse_args()
    import charnn

    r = charnn.load(a.run)
    if a.start:
        return start_comparison(r)
    text = a.corpus.read_text(encoding="utf-8")
    val = text[int(len(text) * 0.9):][: a.hazard_chars]
    ch, mh = corpus_hazard(val), model_hazard(r.model, r.tokenizer, val, a.temps)
    print(f"{'n':>4}{'corpus':>9}{'model':>9}" + "".join(f"{'T=' + format(T, 'g'):>9}" for T in a.temps))
    for n in NS:
        if n in mh:
            print(f"{n:>4}{ch[n]:>9.3f}{mh[n][1.0]:>9.3f}" + "".join(f"{mh[n][T]:>9.3f}" for T in a.temps))
    for T in a.temps:
        samples = [r.sample(a.prime, a.length, temperature=T, seed=i) for i in range(a.samples)]
        st = sample_stats(samples)
        print(f"prime {a.prime!r} T={T:g}: longest run of spaces max {st['longest_run_max']} mean "
              f"{st['longest_run_mean']:.1f}; {100 * st['share_in_runs_over_24']:.1f}% of characters in runs > 24; "
              f"{100 * st['parsable_line_share']:.0f}% of lines in a compiling prefix")
        for s in samples[: a.show]:
            print("    " + s[:400].replace("\n", "\n    "))


if __name__ == "__main__":
    main()
