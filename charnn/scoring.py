"""Scoring texts one at a time (`charnn score`): how likely the model finds each line (or
document), to rank, filter or spot the odd one out.

Each text is read as a whole text is written: from the state a sample starts in (after a line
break; for a document model, at a document's start), its tokens, then its end (the line break,
or the end of a document), all scored:

    log P(text) = sum over the text's tokens and its end of log p(token | what came before)

so a complete line is told apart from the start of a longer one. Per character it counts the
end as one character, as training does. A text the tokenizer cannot encode (a character a char
model never saw) has probability zero: logprob -inf, with the reason in `error`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from charnn.errors import CharnnError

LN2 = math.log(2.0)


@dataclass
class TextScore:
    text: str
    logprob: float            # nats: the text's tokens and its end
    tokens: int               # tokens scored
    chars: int                # characters they stand for (the end counts one)
    token_logprobs: list[tuple[str, float]] | None = None
    error: str | None = None

    @property
    def bits_per_char(self) -> float:
        return -self.logprob / max(1, self.chars) / LN2

    @property
    def perplexity(self) -> float:
        """Per token: exp of the mean negative log-probability."""
        nats = -self.logprob / max(1, self.tokens)
        return math.exp(nats) if nats < 700 else math.inf

    def to_dict(self) -> dict[str, Any]:
        d = {"text": self.text, "logprob": self.logprob, "tokens": self.tokens, "chars": self.chars,
             "bits_per_char": self.bits_per_char, "perplexity": self.perplexity}
        if self.token_logprobs is not None:
            d["token_logprobs"] = [{"token": t, "logprob": lp} for t, lp in self.token_logprobs]
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclass
class Scorer:
    """Scores texts with a loaded run's model (charnn.run.Run)."""

    model: Any
    tokenizer: Any
    ckpt: dict = field(default_factory=dict)

    def __post_init__(self):
        from charnn.sampling.generate import start_ids

        tok = self.tokenizer
        self.start = start_ids(tok, "")                    # [eod], [newline] or []
        self.end = tok.eod_id if tok.eod_id is not None else tok.id_of("\n")
        self.model.eval()

    def score(self, text: str, tokens: bool = False) -> TextScore:
        import torch

        tok = self.tokenizer
        try:
            ids = [int(i) for i in tok.encode(text)]
        except CharnnError as e:
            return TextScore(text, -math.inf, 0, len(text) + 1, [] if tokens else None, str(e))
        seq = self.start + ids + ([self.end] if self.end is not None else [])
        first = max(1, len(self.start))        # the first position predicted (no start: the 2nd token)
        if len(seq) <= first:
            return TextScore(text, 0.0, 0, 0, [] if tokens else None)
        x = torch.tensor(seq[:-1]).unsqueeze(0)                                  # (1, n)
        with torch.no_grad():
            logits, _ = self.model(x, None, self._cond(text))                    # (1, n, V)
        logp = torch.log_softmax(logits[0].float(), -1)                          # (n, V)
        target = torch.tensor(seq[1:])
        each = logp.gather(1, target[:, None]).squeeze(1)[first - 1:].double()   # (scored,)
        scored = seq[first:]                   # the text's tokens (but an unscored first) and its end
        per_token = None
        if tokens:
            names = self._token_names(text, ids)[first - len(self.start):] + self._end_name()
            per_token = list(zip(names, each.tolist()))
        return TextScore(text, float(each.sum()), len(scored), tok.count_chars(scored), per_token)

    def score_all(self, texts: Iterable[str], tokens: bool = False) -> Iterator[TextScore]:
        for t in texts:
            yield self.score(t, tokens)

    def _cond(self, text: str):
        """--input bow models: the text's own bag of words (as training conditions a document)."""
        if self.model.cfg.input != "bow":
            return None
        import torch

        from charnn.representations.bow import COND_WEIGHT
        from charnn.representations.vectorize import BowVocab

        v = BowVocab.from_state(self.ckpt.get("bow") or {}).vector(text, COND_WEIGHT)
        return torch.from_numpy(v).unsqueeze(0)                                  # (1, bow_dim)

    def _token_names(self, text: str, ids: list[int]) -> list[str]:
        names = self.tokenizer.tokens(text)
        return names if len(names) == len(ids) else [self.tokenizer.decode([i]) for i in ids]

    def _end_name(self) -> list[str]:
        from charnn.sampling.logprobs import token_name

        return [] if self.end is None else [token_name(self.tokenizer, self.end)]


def units(stream: TextIO, mode: str = "lines") -> Iterator[str]:
    """The texts of a stream, as they arrive: its lines (mode lines, the default), its
    paragraphs (blank-lines) or the whole of it (files). Reads no further than it must, so a
    pipe gets a line out for each line in."""
    from charnn.documents import MODES

    if mode not in MODES:
        raise CharnnError(f"--docs {mode!r}: choose one of {', '.join(MODES)}", 2)
    if mode == "files":
        yield stream.read().strip("\r\n")
        return
    para: list[str] = []
    for line in iter(stream.readline, ""):
        line = line.rstrip("\n").rstrip("\r")
        if mode == "lines":
            yield line
        elif line.strip():
            para.append(line)
        elif para:
            yield "\n".join(para)
            para = []
    if para:
        yield "\n".join(para)
