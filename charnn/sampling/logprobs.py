"""Per-token log-probabilities of sampled text (`charnn sample --logprobs N --json`).

Each drawn token is recorded with its log-probability under the model itself (temperature 1,
no top-k/top-p: what the model believes, whatever the sampling settings) and the N likeliest
tokens at that step with theirs, as OpenAI's completions API reports them.
"""

from __future__ import annotations

from typing import Any

import torch

from charnn.tokenizers import Tokenizer

EOD_LABEL = "<eod>"       # the end of a document, which decodes to no text


def token_name(tokenizer: Tokenizer, token_id: int) -> str:
    """A token as text (a byte or piece that is not a whole character shows as U+FFFD)."""
    return EOD_LABEL if token_id == tokenizer.eod_id else tokenizer.decode([token_id])


class TokenLog:
    """generate()'s observe hook: records[i] is stream i's list of
    {"token", "id", "logprob", "top": [{"token", "id", "logprob"}, ...]}."""

    def __init__(self, tokenizer: Tokenizer, streams: int, top: int):
        self.tokenizer, self.top = tokenizer, top
        self.records: list[list[dict[str, Any]]] = [[] for _ in range(streams)]

    def __call__(self, logits: torch.Tensor, ids: torch.Tensor, done: list[bool]) -> None:
        logp = torch.log_softmax(logits.float().cpu(), -1)                        # (N, V)
        ids = ids.cpu()
        chosen = logp.gather(1, ids[:, None]).squeeze(1).tolist()                # (N,)
        vals, idx = logp.topk(min(self.top, logp.shape[1]), -1)                   # (N, top)
        for i, t in enumerate(ids.tolist()):
            if done[i]:
                continue
            self.records[i].append({
                "token": token_name(self.tokenizer, t), "id": t, "logprob": chosen[i],
                "top": [{"token": token_name(self.tokenizer, j), "id": j, "logprob": v}
                        for j, v in zip(idx[i].tolist(), vals[i].tolist())]})
