"""A trained run, loaded: the model, its tokenizer and its checkpoint, with the things people do
with one (sample, score). The commands, the server, the inspector and the public API
(`charnn.load`) all open runs through `load`.

    run = load("checkpoints/lee")                  # a run folder, a .pt file, a run name, or None
    run.sample("The ", length=200, temperature=0.8, seed=1)     # -> str, the prime included
    run.score("Some text.")                         # -> {"nats_per_char": ..., ...}
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charnn import checkpoint


@dataclass
class Run:
    """A loaded checkpoint: `model` (charnn.model.RNNLM, eval mode, CPU), `tokenizer`, `path`
    (the checkpoint file) and `ckpt` (its plain-data dict: configs, progress, history)."""

    path: Path
    ckpt: dict[str, Any]
    model: Any
    tokenizer: Any

    @property
    def name(self) -> str:
        """The run folder's name (the checkpoint's folder), e.g. 'lee'."""
        return self.path.parent.name or self.path.stem

    @property
    def config(self):
        return self.model.cfg

    @property
    def best_val_loss(self) -> float | None:
        """Validation loss in nats per token at the best evaluation, if any."""
        v = self.ckpt.get("progress", {}).get("best_val")
        return float(v) if isinstance(v, (int, float)) else None

    @property
    def chars_per_token(self) -> float:
        return float(self.ckpt.get("progress", {}).get("chars_per_token", 1.0)) or 1.0

    def generate(self, prime: str = "", length: int = 1000, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, stop: str | None = None,
                 seed: int | None = None, topic: str | None = None,
                 quantize: str = "none") -> Iterator[str]:
        """The sampled text piece by piece as it is made (the prime is not repeated)."""
        from charnn.config import SampleConfig
        from charnn.sampling.generate import generate

        cfg = SampleConfig(length=length, temperature=temperature, top_k=top_k, top_p=top_p,
                           prime=prime, stop=stop, num_samples=1, seed=seed)
        for pieces in generate(self.model, self.tokenizer, cfg, cond=self.topic(topic), quantize=quantize):
            if pieces[0]:
                yield pieces[0]

    def sample(self, prime: str = "", length: int = 1000, **options) -> str:
        """A sample of `length` tokens after `prime` (prime included); options as generate()."""
        return prime + "".join(self.generate(prime, length, **options))

    def score(self, text: str, seq_len: int = 256) -> dict[str, float]:
        """The model's loss on `text`: nats per token and per character, bits per character,
        perplexity, and the tokens scored (the first token is context, not scored)."""
        import math

        import numpy as np

        from charnn.errors import CharnnError
        from charnn.representations.bow import cond_for
        from charnn.training.evaluate import LN2, evaluate

        ids = np.asarray(self.tokenizer.encode(text), dtype=np.int64)
        if len(ids) < 2:
            raise CharnnError("the text is too short to score (it needs at least 2 tokens)")
        # one stream, the state carried across chunks: every token after the first is scored
        loss, n = evaluate(self.model, ids, 1, seq_len, cond=cond_for(self.ckpt, self.tokenizer, ids))
        chars = self.tokenizer.count_chars(ids[1:]) if self.tokenizer.name != "char" else n
        nats_char = loss * n / max(1, chars)
        return {"loss": loss, "tokens": n, "nats_per_char": nats_char, "bits_per_char": nats_char / LN2,
                "perplexity": math.exp(min(loss, 50.0))}

    def score_lines(self, texts, tokens: bool = False) -> Iterator[dict[str, Any]]:
        """Each text scored whole, its end included, as `charnn score` does (charnn.scoring):
        a dict per text with logprob (nats), tokens, chars, bits_per_char, perplexity."""
        from charnn.scoring import Scorer

        scorer = Scorer(self.model, self.tokenizer, self.ckpt)
        for text in texts:
            yield scorer.score(text, tokens).to_dict()

    def topic(self, words: str | None):
        """The conditioning vector of an --input bow model ((1, bow_dim); None for others)."""
        from charnn.representations.bow import topic_cond

        return topic_cond(self.ckpt, self.model, words)


def load(run: str | Path | None = None, prefer: str = checkpoint.BEST, mmap: bool = False) -> Run:
    """Open a run: a run folder (its best.pt, else latest.pt), a checkpoint file, a run name
    under ./checkpoints, or None for the newest run there. The file is checked and loaded
    without running code (charnn.checkpoint); CharnnError says what is wrong with it."""
    path = checkpoint.resolve(None if run is None else str(run), prefer)
    ckpt = checkpoint.load(path, mmap=mmap)
    model, tok = checkpoint.build_model(ckpt)
    model.eval()
    return Run(path, ckpt, model, tok)
