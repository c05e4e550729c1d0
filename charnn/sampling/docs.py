"""Whole documents from a document model (`charnn sample --docs N`, charnn.documents).

Each stream starts a document from the zero state (the end-of-document id, then the prime),
draws until the model ends it, and starts the next one; a document is yielded as soon as it
ends. A document that runs past `length` tokens without ending is dropped (so every document
printed is whole), and with `fingerprints` (--novel-only) so is one that is in the training
text. The streams keep their own seeded generators across documents, so a seed repeats.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from charnn.config import SampleConfig
from charnn.errors import CharnnError
from charnn.model import RNNLM
from charnn.sampling.generate import Picker, read_primes, start_ids
from charnn.sampling.stepper import Stepper
from charnn.tokenizers import Tokenizer

MAX_STREAMS = 64        # documents drawn side by side
TRIES_PER_DOC = 20      # give up after this many drawn documents per one asked for (+ 100)


@dataclass
class Document:
    text: str          # the prime included
    tokens: int        # drawn, the end included
    logprob: float     # the model's log-probability of the drawn tokens and the end (nats)


class DocumentSampler:
    """Iterate to get `count` documents; afterwards `known` (dropped as training documents),
    `too_long` (dropped at `length` tokens) and `drawn` say what else came out."""

    def __init__(self, model: RNNLM, tokenizer: Tokenizer, cfg: SampleConfig, count: int,
                 fingerprints: set[int] | None = None, cond: torch.Tensor | None = None,
                 quantize: str = "none"):
        if tokenizer.eod_id is None:
            raise CharnnError("this model was not trained on documents (charnn train --docs), so "
                              "it has no end of a document to stop at: use --length instead")
        if count < 1:
            raise CharnnError("--docs must be at least 1", 2)
        self.model, self.tok, self.cfg, self.count = model.eval(), tokenizer, cfg, count
        self.fingerprints, self.cond, self.quantize = fingerprints, cond, quantize
        self.known = self.too_long = self.drawn = 0
        self.max_drawn = TRIES_PER_DOC * count + 100

    def __iter__(self) -> Iterator[Document]:
        N, eod, cfg = min(self.count, MAX_STREAMS), self.tok.eod_id, self.cfg
        picker = Picker(N, self.tok.vocab_size, cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)
        cond = self.cond.expand(N, -1) if self.cond is not None else None
        stepper = Stepper(self.model, N, cond, self.quantize)
        logits = read_primes(self.model, stepper, [start_ids(self.tok, cfg.prime)] * N, cond)
        # every document starts from here: the state and logits after its start (rows alike)
        fresh_state = tuple(s[:, :1].clone() for s in stepper.state())         # (L, 1, H)
        fresh_logits = logits[:1].clone()                                        # (1, V)
        ids: list[list[int]] = [[] for _ in range(N)]
        logp = torch.zeros(N, dtype=torch.float64)
        made = 0
        while made < self.count and self.drawn < self.max_drawn:
            nxt = picker(logits)                                                 # (N,)
            logp += torch.log_softmax(logits.float(), -1).gather(1, nxt[:, None]).squeeze(1)
            ended = []
            for i, t in enumerate(nxt.tolist()):
                if t != eod and len(ids[i]) < cfg.length:
                    ids[i].append(t)
                    continue
                ended.append(i)
                doc = self._finish(ids[i], float(logp[i]), whole=t == eod)
                ids[i], logp[i] = [], 0.0
                if doc is not None:
                    yield doc
                    made += 1
                    if made == self.count:
                        return
            logits = stepper.step(nxt)
            if ended:            # those streams start their next document
                rows = torch.tensor(ended)
                stepper.load_rows(rows, fresh_state)
                logits[rows] = fresh_logits

    def _finish(self, ids: list[int], logprob: float, whole: bool) -> Document | None:
        self.drawn += 1
        if not whole:
            self.too_long += 1
            return None
        text = self.cfg.prime + self.tok.decode(ids)
        if self.fingerprints is not None:
            from charnn.documents import fingerprint_text

            if fingerprint_text(self.tok, text) in self.fingerprints:
                self.known += 1
                return None
        return Document(text, len(ids) + 1, logprob)


def training_fingerprints(ckpt: dict) -> set[int]:
    """The fingerprints of a run's training documents (for --novel-only)."""
    docs = ckpt.get("docs")
    if not docs:
        raise CharnnError("--novel-only needs a model trained on documents (charnn train --docs)", 2)
    fps = docs.get("fingerprints")
    if fps is None:
        raise CharnnError("this run's corpus held too many documents to keep their fingerprints, "
                          "so --novel-only cannot tell which are in it")
    return set(fps.tolist())
