"""Running a stacked nn.LSTM/GRU/RNN over a chunk whose streams reset their state mid-chunk
(document boundaries, charnn.documents), in one call of the fused kernel.

A chunk (B, t) with resets at different steps in different streams cannot be run row by row
through one fused call, and stepping it (t calls) is many times slower. Instead every stream is
cut at its resets into segments, and the segments run as one batch of variable-length
sequences (a PackedSequence):

    stream 0:  a b c | d e f g        resets before d (stream 0) and before y (stream 1)
    stream 1:  w x | y z q r s
    segments:  [a b c] [d e f g] [w x] [y z q r s]     packed by length, step by step
    state in:  carried  zero      carried zero
    state out: each stream's last segment's

A segment that starts the chunk without a reset takes the stream's carried state; every other
one starts from zeros. The outputs are put back in (B, t) order, and each stream's new state is
its last segment's final state. Gradients flow as through the plain call.

On the CPU a packed sequence runs PyTorch's own kernel, not oneDNN's fused one, and costs more
per token; so when the resets fall on only a few steps of the chunk (long documents), the chunk
is instead cut at those steps into at most MAX_PIECES plain calls, zeroing the state rows of the
streams that reset between them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

MAX_PIECES = 4      # plain calls per chunk, at most, before packing the segments instead


def run_with_resets(rnn: nn.RNNBase, x: torch.Tensor, state: tuple[torch.Tensor, ...],
                    resets: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x (B, t, E), state (h,) or (h, c) each (layers, B, H), resets (B, t) bool: zero the
    state before step j of stream i where resets[i, j]. -> outputs (B, t, H), new state."""
    steps = resets.any(0).nonzero().squeeze(1).tolist()         # steps where some stream resets
    if len(steps) + (steps[:1] != [0]) <= MAX_PIECES:
        return _run_in_pieces(rnn, x, state, resets, steps)
    return _run_packed(rnn, x, state, resets)


def _run_in_pieces(rnn, x, state, resets, steps):
    """Plain fused calls between the steps where a reset falls."""
    bounds = sorted({0, *steps, x.shape[1]})
    outs = []
    for a, b in zip(bounds, bounds[1:]):
        keep = (~resets[:, a]).view(1, -1, 1)                    # (1, B, 1): zero where it resets
        state = tuple(torch.where(keep, s, torch.zeros((), dtype=s.dtype, device=s.device)) for s in state)
        out, state = rnn(x[:, a:b], state if len(state) == 2 else state[0])
        state = state if isinstance(state, tuple) else (state,)
        outs.append(out)
    return torch.cat(outs, 1), state


def _run_packed(rnn, x, state, resets):
    """All segments as one PackedSequence (see the module's doc)."""
    B, t, E = x.shape
    order, batch_sizes, first, last, S = _segments(resets)
    flat_reset = resets.reshape(-1)
    # each segment's initial state (in packed order): the stream's own if it opens the chunk
    # without a reset, else zeros
    rows = first // t                                                   # (S,) stream of each segment
    carried = ((first % t == 0) & ~flat_reset[first]).view(1, S, 1)
    h0 = tuple(torch.where(carried, s[:, rows], torch.zeros((), dtype=s.dtype, device=s.device))
               for s in state)                                          # (layers, S, H) each
    packed = PackedSequence(x.reshape(B * t, E)[order], batch_sizes)
    out, hn = rnn(packed, h0 if len(h0) == 2 else h0[0])
    # packed order -> (B, t): out.data[k] belongs at flat position order[k]
    y = torch.empty_like(out.data).index_copy(0, order, out.data)       # (B*t, H)
    hn = hn if isinstance(hn, tuple) else (hn,)
    return y.view(B, t, -1), tuple(h[:, last] for h in hn)


def _segments(resets: torch.Tensor):
    """resets (B, t) bool -> the packing of the segments, longest first:
    order (B*t,): flat positions in packed order; batch_sizes (L,) on the CPU: segments still
    running at each step; first (S,): each packed segment's first flat position; last (B,):
    each stream's last segment (packed index); S: the number of segments."""
    B, t = resets.shape
    starts = resets.clone()
    starts[:, 0] = True                       # every stream opens a segment at the chunk start
    flat = starts.reshape(-1)
    seg = flat.cumsum(0) - 1                  # (B*t,) segment of each position, in stream order
    first = flat.nonzero().squeeze(1)         # (S,) first position of each segment
    S = first.numel()
    offset = torch.arange(B * t, device=resets.device) - first[seg]    # step within its segment
    length = torch.bincount(seg, minlength=S)
    by_length = torch.argsort(-length, stable=True)     # packed index -> segment
    rank = torch.empty_like(by_length)
    rank[by_length] = torch.arange(S, device=resets.device)            # segment -> packed index
    # a PackedSequence lists step 0 of every segment (longest first), then step 1, ...
    order = torch.argsort(offset * S + rank[seg])
    batch_sizes = torch.bincount(offset).cpu()
    last = rank[seg.view(B, t)[:, -1]]
    return order, batch_sizes, first[by_length], last, S
