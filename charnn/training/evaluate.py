"""Evaluation: the mean cross-entropy of a model over a token array, read as B parallel streams
with the recurrent state carried from chunk to chunk (as in training, without the gradient)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from charnn.data import batchify, get_chunk, num_chunks
from charnn.errors import CharnnError
from charnn.model import RNNLM
from charnn.training.distributed import Group

LN2 = math.log(2.0)


@torch.no_grad()
def evaluate(model: RNNLM, ids: np.ndarray, batch_size: int, seq_len: int,
             device: torch.device | str = "cpu", amp: bool = False,
             max_tokens: int | None = None, cond: Any = None,
             group: Group | None = None, deadline: float | None = None,
             min_tokens: int = 0, eod: int | None = None) -> tuple[float, int]:
    """Mean cross-entropy (nats per token) over `ids`, read as B streams with carried state.

    Returns (loss, tokens scored). `max_tokens` caps the work for periodic evaluations;
    `deadline` (a time.time() value) ends it after the chunk that passes it, once this process
    has scored `min_tokens`: the streams then stand for the split as a sample of its B parts.
    cond: a representations.bow.DocCond aligned with `ids` for --input bow models. group: in a
    distributed run each rank scores its share of the B streams and the sums are all-reduced.
    eod: documents' end-of-document id; the state is reset before each (charnn.documents).
    """
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[:max_tokens]
        cond = cond.prefix(max_tokens) if cond is not None else None
    B = max(1, min(batch_size, (len(ids) - 1) // 2))
    rows = group.rows(B) if group is not None else slice(None)   # this rank's streams
    streams = batchify(ids, B)[rows]                             # (B, L), or (B/W, L) of them
    was_training = model.training
    model.eval()
    state, total, count = None, 0.0, 0
    device = torch.device(device)
    for i in range(num_chunks(streams, seq_len) if len(streams) else 0):
        blk = torch.from_numpy(get_chunk(streams, i, seq_len)).to(device)   # (B, t + 1)
        c = cond.chunk(B, i, seq_len, device, rows) if cond is not None else None  # per-step bow
        resets = {"resets": blk[:, :-1] == eod} if eod is not None else {}
        with autocast(device, amp):
            logits, state = model(blk[:, :-1], state, c, **resets)
        total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                 blk[:, 1:].reshape(-1), reduction="sum").item()
        count += blk[:, 1:].numel()
        if deadline is not None and count >= min_tokens and time.time() >= deadline:
            break
    model.train(was_training)
    if group is not None:
        total, n = group.sum(total, count)
        count = int(n)
    if count == 0:
        raise CharnnError("the validation split is too short to evaluate")
    return total / count, count


def autocast(device: torch.device, amp: bool):
    """bf16 autocast where --amp is on and the device computes bf16 natively (CUDA, CPUs with
    AVX-512 BF16 or AMX: charnn.machine.amp_dtype); otherwise fp32."""
    from charnn.machine import amp_dtype

    dtype = amp_dtype(device, amp)
    if dtype is not None:
        return torch.autocast(device.type, dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def score_ids(model: RNNLM, ckpt: dict[str, Any], tokenizer, ids: np.ndarray, batch_size: int = 32,
              seq_len: int = 256, quantize: str = "none", eod: int | None = None) -> dict[str, Any]:
    """A model's loss on a token array, as `charnn eval` reports it: nats per token and per
    character of the text the scored tokens stand for, bits per character, perplexity."""
    from charnn.representations.bow import cond_for
    from charnn.training.dataset import count_chars

    cond = cond_for(ckpt, tokenizer, ids)
    if quantize == "int8":
        from charnn.sampling.generate import evaluate_stepwise

        loss, n = evaluate_stepwise(model, ids, batch_size, seq_len, cond=cond, quantize=quantize, eod=eod)
    else:
        loss, n = evaluate(model, ids, batch_size, seq_len, cond=cond, eod=eod)
    # evaluate() scores the ids the streams cover; count the characters of exactly those
    B = max(1, min(batch_size, (len(ids) - 1) // 2))
    covered = ids[: (len(ids) // B) * B]
    nats_char = loss / (count_chars(tokenizer, covered) / len(covered))   # per token -> per character
    return {"tokens": n, "loss": loss, "nats_per_char": nats_char, "bits_per_char": nats_char / LN2,
            "perplexity": math.exp(min(loss, 50.0)), "quantize": quantize}


def val_metrics(loss: float, chars_per_token: float) -> dict[str, float]:
    """Per-token validation loss -> the figures users compare: nats/char, bits/char, perplexity."""
    nats_char = loss / chars_per_token
    return {"val_loss": loss, "val_nats_per_char": nats_char, "val_bpc": nats_char / LN2,
            "val_ppl": math.exp(min(loss, 50.0))}
