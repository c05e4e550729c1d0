"""Beam search (`charnn sample --beam K`): the likeliest continuation, not a sampled one.

K hypotheses are kept in K Stepper streams. At each step every hypothesis is extended by every
token, and the K best extensions by total log-probability go on (their parents' states copied
into place, Stepper.reorder). An extension by the end-of-document id (document models), or one
whose text reaches --stop, is finished and set aside; the search ends when K are finished or
after `length` tokens. Hypotheses are ranked by log-probability per token (length
normalisation with exponent LENGTH_ALPHA), since a total favours the shortest; the finished
ones first. Deterministic: no draws. K = 1 is greedy decoding (--temp 0).

Good for the most likely completion of a prompt (a name, a word, the end of a line); bad for
open-ended text, where the likeliest sequence is a dull one that repeats itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from charnn.errors import CharnnError
from charnn.model import RNNLM
from charnn.sampling.generate import read_primes, start_ids
from charnn.sampling.stepper import Stepper
from charnn.tokenizers import Tokenizer

LENGTH_ALPHA = 1.0      # score = logprob / tokens ** alpha: 1 is the mean log-probability per token


@dataclass
class Hypothesis:
    ids: list[int]         # the tokens after the prime (an end of document included)
    logprob: float         # their total log-probability (nats)
    finished: bool         # ended by the end of a document or --stop, not by the length

    @property
    def score(self) -> float:
        return self.logprob / max(1, len(self.ids)) ** LENGTH_ALPHA


def beam_search(model: RNNLM, tokenizer: Tokenizer, prime: str, beam: int, length: int,
                stop: str | None = None, cond: torch.Tensor | None = None,
                keep: int = 1) -> list[Hypothesis]:
    """The `keep` best hypotheses after `prime`, best first (finished ones before unfinished)."""
    if beam < 1:
        raise CharnnError("--beam must be at least 1", 2)
    if keep > beam:
        raise CharnnError(f"beam search finds at most --beam {beam} results, not {keep}", 2)
    model.eval()
    K, V, eod = beam, tokenizer.vocab_size, tokenizer.eod_id
    cond = cond.expand(K, -1) if cond is not None else None
    stepper = Stepper(model, K, cond)
    logits = read_primes(model, stepper, [start_ids(tokenizer, prime)] * K, cond)   # (K, V), rows alike
    alive: list[list[int]] = [[]]
    scores = torch.tensor([0.0] + [-math.inf] * (K - 1), dtype=torch.float64)     # one start, not K
    done: list[Hypothesis] = []
    for _ in range(length):
        cand = scores[:, None] + torch.log_softmax(logits.double(), -1)          # (K, V)
        top, index = cand.view(-1).topk(min(2 * K, K * V))                        # finished ones aside,
        nxt_ids, nxt_scores, parents, tokens = [], [], [], []                     # K go on
        for sc, ix in zip(top.tolist(), index.tolist()):
            if sc == -math.inf or len(nxt_ids) == K:
                break
            p, t = divmod(ix, V)
            ids = alive[p] + [t]
            if t == eod or _stopped(tokenizer, ids, stop):
                done.append(Hypothesis(ids, sc, True))
                continue
            nxt_ids.append(ids)
            nxt_scores.append(sc)
            parents.append(p)
            tokens.append(t)
        if len(done) >= K or not nxt_ids:
            break
        pad = K - len(nxt_ids)            # fewer than K going on: the rest are dead copies
        alive = nxt_ids + [nxt_ids[-1]] * pad
        scores = torch.tensor(nxt_scores + [-math.inf] * pad, dtype=torch.float64)
        stepper.reorder(torch.tensor(parents + [parents[-1]] * pad))
        logits = stepper.step(torch.tensor(tokens + [tokens[-1]] * pad))
    else:
        nxt_ids, nxt_scores = alive, scores.tolist()
    rest = [Hypothesis(i, s, False) for i, s in zip(nxt_ids, nxt_scores) if s > -math.inf]
    ranked = sorted(done, key=lambda h: -h.score) + sorted(rest, key=lambda h: -h.score)
    return ranked[:keep]


def _stopped(tokenizer: Tokenizer, ids: list[int], stop: str | None) -> bool:
    return bool(stop) and stop in tokenizer.decode(ids)


def text_of(tokenizer: Tokenizer, h: Hypothesis, stop: str | None = None) -> str:
    """A hypothesis's text (after the prime), cut before --stop."""
    text = tokenizer.decode(h.ids)
    return text.split(stop, 1)[0] if stop else text
