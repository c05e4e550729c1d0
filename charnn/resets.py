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

That is the way on a GPU, where cuDNN runs packed sequences at full speed. On the CPU a packed
sequence runs PyTorch's own step-by-step kernel, not oneDNN's fused one, and measured 4-5x
slower than a plain call (benchmarks/docs_speed.py). There the chunk runs as a few plain fused
calls instead, whichever way takes fewer:
  - in pieces between the steps where some stream resets (the rows that reset zeroed between
    pieces): few calls for long documents;
  - by length: the segments of each length as one batch (exact lengths, so exact final states):
    few calls for short documents such as names, whose lengths repeat.
A GPU also takes the pieces when there are at most MAX_PIECES.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

MAX_PIECES = 4      # GPU: plain calls per chunk, at most, before packing the segments instead
State = tuple[torch.Tensor, ...]


def run_with_resets(rnn: nn.RNNBase, x: torch.Tensor, state: State,
                    resets: torch.Tensor) -> tuple[torch.Tensor, State]:
    """x (B, t, E), state (h,) or (h, c) each (layers, B, H), resets (B, t) bool: zero the
    state before step j of stream i where resets[i, j]. -> outputs (B, t, H), new state."""
    steps = resets.any(0).nonzero().squeeze(1).tolist()         # steps where some stream resets
    pieces = len(steps) + (steps[:1] != [0])
    if pieces <= MAX_PIECES:
        return _run_in_pieces(rnn, x, state, resets, steps)
    segs = Segments(resets)
    if x.device.type != "cpu":
        return _run_packed(rnn, x, state, segs)
    if len(segs.lengths) < pieces:
        return _run_by_length(rnn, x, state, segs)
    return _run_in_pieces(rnn, x, state, resets, steps)


def _call(rnn: nn.RNNBase, x: torch.Tensor, state: State):
    out, new = rnn(x, state if len(state) == 2 else state[0])
    return out, new if isinstance(new, tuple) else (new,)


def _zero_where(mask: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """s (layers, N, H) with the rows where mask (N,) is True set to zero."""
    return torch.where(mask.view(1, -1, 1), torch.zeros((), dtype=s.dtype, device=s.device), s)


def _run_in_pieces(rnn, x, state, resets, steps):
    """Plain fused calls between the steps where a reset falls."""
    bounds = sorted({0, *steps, x.shape[1]})
    outs = []
    for a, b in zip(bounds, bounds[1:]):
        state = tuple(_zero_where(resets[:, a], s) for s in state)
        out, state = _call(rnn, x[:, a:b], state)
        outs.append(out)
    return torch.cat(outs, 1), state


class Segments:
    """The segments of a chunk: each stream cut before its resets (see the module's doc).
    seg (B*t,): each flat position's segment, in stream order; first, length (S,): each
    segment's first flat position and length; last (B,): each stream's last segment;
    zero (S,): the segment starts from zeros (not its stream's carried state); rows (S,):
    its stream; lengths: the distinct lengths."""

    def __init__(self, resets: torch.Tensor):
        B, t = resets.shape
        starts = resets.clone()
        starts[:, 0] = True                   # every stream opens a segment at the chunk start
        flat = starts.reshape(-1)
        self.seg = flat.cumsum(0) - 1
        self.first = flat.nonzero().squeeze(1)
        self.S = self.first.numel()
        self.length = torch.bincount(self.seg, minlength=self.S)
        self.last = self.seg.view(B, t)[:, -1]
        self.rows = self.first // t
        self.zero = resets.reshape(-1)[self.first] | (self.first % t != 0)
        self.lengths = self.length.unique().tolist()

    def initial(self, state: State, index: torch.Tensor) -> State:
        """The initial states of segments `index`, (layers, n, H) each."""
        return tuple(_zero_where(self.zero[index], s[:, self.rows[index]]) for s in state)


def _run_by_length(rnn, x, state, segs: Segments):
    """One plain call per distinct segment length, on all the segments of that length."""
    B, t, E = x.shape
    flat = x.reshape(B * t, E)
    outs, where, finals, which = [], [], [], []
    for n in segs.lengths:
        index = (segs.length == n).nonzero().squeeze(1)                     # (k,) segments
        pos = segs.first[index, None] + torch.arange(n, device=x.device)   # (k, n) flat positions
        out, new = _call(rnn, flat[pos], segs.initial(state, index))        # (k, n, H)
        outs.append(out.reshape(-1, out.shape[-1]))
        where.append(pos.reshape(-1))
        finals.append(new)
        which.append(index)
    out, pos = torch.cat(outs), torch.cat(where)
    y = out.new_zeros(B * t, out.shape[-1]).index_copy(0, pos, out)         # (B*t, H)
    index = torch.cat(which)
    final = tuple(torch.cat([f[i] for f in finals], 1) for i in range(len(state)))  # (layers, S, H)
    order = torch.empty_like(index)
    order[index] = torch.arange(segs.S, device=x.device)                    # segment -> column
    return y.view(B, t, -1), tuple(f[:, order[segs.last]] for f in final)


def _run_packed(rnn, x, state, segs: Segments):
    """All segments as one PackedSequence, longest first (see the module's doc)."""
    B, t, E = x.shape
    by_length = torch.argsort(-segs.length, stable=True)                  # packed index -> segment
    rank = torch.empty_like(by_length)
    rank[by_length] = torch.arange(segs.S, device=x.device)                # segment -> packed index
    # a PackedSequence lists step 0 of every segment (longest first), then step 1, ...
    offset = torch.arange(B * t, device=x.device) - segs.first[segs.seg]    # step within its segment
    order = torch.argsort(offset * segs.S + rank[segs.seg])
    batch_sizes = torch.bincount(offset).cpu()
    packed = PackedSequence(x.reshape(B * t, E)[order], batch_sizes)
    out, hn = _call(rnn, packed, segs.initial(state, by_length))
    # packed order -> (B, t): out.data[k] belongs at flat position order[k]
    y = torch.empty_like(out.data).index_copy(0, order, out.data)           # (B*t, H)
    return y.view(B, t, -1), tuple(h[:, rank[segs.last]] for h in hn)
