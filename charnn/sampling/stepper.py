"""Step-wise generation: one token at a time with the recurrent state carried, never re-running
the model over the prefix.

The prime is read with the model's fused forward; after that `Stepper` takes over. At batch 1 a
step is a few matrix-vector products, and calling nn.LSTM once per token spends most of its time
on per-call overhead, so the Stepper does the step on plain tensors with everything arranged
ahead of time:
  - layer 0's input projection is a lookup: table = E @ W_ih0^T + biases, (V, G), so an
    embedding lookup plus a matmul becomes one row gather;
  - LSTM and RNN layers above do one addmm on [x, h] against pre-concatenated [W_ih; W_hh]^T;
    the hidden states of all layers sit side by side in one buffer [h_0 | h_1 | ...], so
    [x, h] for layer l is a fixed slice of it, [h_{l-1} | h_l], with no concatenation;
  - LSTM gate rows are reordered to (i, f, o, g) so one sigmoid covers three gates;
  - every buffer (state, gates, logits) and every view of one is made once; a step writes
    into them in place (out=, in-place ops), so it allocates nothing and slices nothing.
With --attention K the top layer's h goes through `WindowSteps`: the K most recent keys and
values sit in a ring buffer, so a step writes one slot and reads K, and never shifts the window.
G is the gate width: 4H (LSTM), 3H (GRU), H (RNN). With quantize="int8" the recurrent and
output products run in dynamic int8 (charnn.sampling.quantize: those large enough to gain from it); the
lookup table stays fp32.

Picking the next token and the generation loop live in charnn.sampling.generate.
"""

from __future__ import annotations

import copy
import math

import torch

from charnn.errors import CharnnError
from charnn.model import RNNLM, State
from charnn.sampling import quantize as q

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


class Stepper:
    """One step of the stacked cell for N streams, on weights and buffers prepared once.

        stepper = Stepper(model, batch_size=N, cond=cond, quantize="none" | "int8")
        stepper.load_state(state)     # an RNNLM state -> the stepper's buffers
        logits = stepper.step(ids)    # ids (N,) int64 -> logits (N, V)
        state = stepper.state()       # the buffers -> an RNNLM state (a copy)

    `step` returns its logits buffer, which the next step overwrites.
    """

    def __init__(self, model: RNNLM, batch_size: int = 1, cond: torch.Tensor | None = None,
                 quantize: str = "none"):
        cfg = model.cfg
        self.cell, L, H = cfg.cell, cfg.layers, cfg.hidden
        self.layers, self.hidden, self.vocab_size = L, H, cfg.vocab_size
        self.embed_dim = cfg.embed_dim
        dev = model.head.weight.device
        if quantize == "int8" and dev.type != "cpu":
            raise CharnnError("--quantize int8 runs on the CPU")
        rnn = model.rnn
        self._attn = model.attn

        def w(name: str, l: int) -> torch.Tensor:       # a weight or bias, gate rows reordered
            t = getattr(rnn, f"{name}_l{l}").detach().float()
            if self.cell == "lstm":  # PyTorch's (i, f, g, o) -> (i, f, o, g), by slices (a gather is slower)
                t = torch.cat([t[:2 * H], t[3 * H:], t[2 * H:3 * H]])
            return t

        def mm(W: torch.Tensor, b: torch.Tensor | None = None):
            return q.matmul(W, b, quantize)

        with torch.no_grad():
            W_ih0, b_ih0, b_hh0 = w("weight_ih", 0), w("bias_ih", 0), w("bias_hh", 0)
            self.W_ih0 = W_ih0                                                 # (G, in_dim)
            emb = model.embed.weight.detach().float() if model.embed is not None else None
            table = emb @ W_ih0.T if emb is not None else W_ih0.T.clone()      # (V, G)
            table += b_ih0
            if self.cell != "gru":
                table += b_hh0      # GRU keeps b_hh apart: it sits inside r * (W_hn h + b_hn)
            self.table = table.contiguous()
            # --input bow: the conditioning vector adds a constant to layer 0's gates
            self._cond_rows = None
            if model.cond is not None and cond is not None:
                self._cond_rows = self.input_gates(model.cond(cond.float().to(dev)))   # (1 or N, G)
            # layer 0: h_0 @ W_hh0^T; layers above: [h_{l-1}, h_l] @ [W_ih; W_hh]^T (GRU: apart)
            self.rec: list = [mm(w("weight_hh", 0), b_hh0 if self.cell == "gru" else None)]
            self.inp: list = [None]
            for l in range(1, L):
                W_ih, W_hh, b_ih, b_hh = w("weight_ih", l), w("weight_hh", l), w("bias_ih", l), w("bias_hh", l)
                if self.cell == "gru":
                    self.inp.append(mm(W_ih, b_ih))                            # (3H, H)
                    self.rec.append(mm(W_hh, b_hh))                            # (3H, H)
                else:
                    self.inp.append(mm(torch.cat([W_ih, W_hh], 1), b_ih + b_hh))  # (G, 2H)
                    self.rec.append(None)
            self.proj = mm(model.proj.weight) if model.proj is not None else None   # (E, H)
            self.head = mm(model.head.weight, model.head.bias)                    # (V, H or E)

        self._make_buffers(batch_size)

    def resized(self, batch_size: int) -> Stepper:
        """A Stepper for `batch_size` streams that shares these prepared weights (nothing is
        copied but the buffers, which start at the zero state). The server keeps one per batch
        size, so streams can join and leave between steps (charnn.serve.engine)."""
        if self._cond_rows is not None and self._cond_rows.shape[0] not in (1, batch_size):
            raise CharnnError("a Stepper conditioned per stream cannot change its batch size")
        other = copy.copy(self)
        other._make_buffers(batch_size)
        return other

    def _make_buffers(self, N: int) -> None:
        """The state, gate and logits buffers for N streams, and the views of them a step uses."""
        L, H, V, G = self.layers, self.hidden, self.vocab_size, self.table.shape[1]
        dev = self.table.device
        self.batch_size = N
        self.cond_gates = None if self._cond_rows is None else self._cond_rows.expand(N, G).contiguous()
        z = lambda *shape: torch.zeros(*shape, device=dev)  # noqa: E731
        self.h = z(N, L * H)                     # [h_0 | h_1 | ... ]
        self.c = z(N, L * H) if self.cell == "lstm" else None
        self.gates = z(N, G)                     # layer l's gates; GRU: its input part
        self.gh = z(N, G) if self.cell == "gru" else None   # GRU: the recurrent part
        self.tmp = z(N, H)
        self.top = z(N, self.embed_dim) if self.proj is not None else None
        self.logits = z(N, V)
        # views, made once: slicing a tensor costs about as much as a small op
        self.h_l = [self.h[:, l * H:(l + 1) * H] for l in range(L)]                 # (N, H)
        self.xh_l = [None] + [self.h[:, (l - 1) * H:(l + 1) * H] for l in range(1, L)]  # (N, 2H)
        g = self.gates
        if self.cell == "lstm":
            self.c_l = [self.c[:, l * H:(l + 1) * H] for l in range(L)]
            self.g_ifo, self.g_i, self.g_f = g[:, :3 * H], g[:, :H], g[:, H:2 * H]
            self.g_o, self.g_g = g[:, 2 * H:3 * H], g[:, 3 * H:]
        elif self.cell == "gru":
            self.g_rz, self.g_r, self.g_z, self.g_n = g[:, :2 * H], g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
            self.gh_rz, self.gh_n = self.gh[:, :2 * H], self.gh[:, 2 * H:]
        self._layers = {"lstm": self._lstm, "gru": self._gru, "rnn": self._rnn}[self.cell]
        self.attn = WindowSteps(self._attn, N) if self._attn is not None else None   # --attention

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        """Input vectors (..., in_dim) -> their contribution to layer 0's gates (..., G)."""
        return x @ self.W_ih0.T

    def load_state(self, state: State) -> None:
        """An RNNLM state, tuple of (layers, N, H) tensors -> the buffers."""
        N, L, H = self.batch_size, self.layers, self.hidden
        self.h.view(N, L, H).copy_(state[0].transpose(0, 1))
        if self.c is not None:
            self.c.view(N, L, H).copy_(state[1].transpose(0, 1))
        if self.attn is not None:
            self.attn.load(state[-1])

    def load_rows(self, rows: torch.Tensor, state: State) -> None:
        """Streams `rows` (k,) take an RNNLM state of batch 1 or k (a document restarts)."""
        L, H = self.layers, self.hidden
        with torch.inference_mode():
            for buf, s in zip((self.h, self.c), state):
                buf.view(self.batch_size, L, H)[rows] = s.transpose(0, 1).to(buf.dtype)

    def reset(self, mask: torch.Tensor) -> None:
        """Zero the state of the streams where mask (N,) is True (before a document starts)."""
        with torch.inference_mode():
            self.h.masked_fill_(mask.unsqueeze(1), 0.0)                       # (N, L*H)
            if self.c is not None:
                self.c.masked_fill_(mask.unsqueeze(1), 0.0)

    def reorder(self, parents: torch.Tensor) -> None:
        """Stream i takes the state of stream parents[i] (beam search keeps the best)."""
        with torch.inference_mode():
            self.h.copy_(self.h[parents])
            if self.c is not None:
                self.c.copy_(self.c[parents])

    def state(self) -> State:
        N, L, H = self.batch_size, self.layers, self.hidden
        h = self.h.view(N, L, H).transpose(0, 1).contiguous()
        rnn = (h,) if self.c is None else (h, self.c.view(N, L, H).transpose(0, 1).contiguous())
        return rnn + ((self.attn.window(),) if self.attn is not None else ())

    def step(self, ids: torch.Tensor, extra_gates: torch.Tensor | None = None) -> torch.Tensor:
        """ids (N,) int64 -> logits (N, V). extra_gates (N, G): added to layer 0's gates (per-step
        conditioning, as `charnn eval` gives a --input bow model)."""
        with torch.inference_mode():
            g = self.gates
            torch.index_select(self.table, 0, ids, out=g)                       # x_t's gates
            if self.cond_gates is not None:
                g.add_(self.cond_gates)
            if extra_gates is not None:
                g.add_(extra_gates)
            self._layers()
            x = self.h_l[-1]
            if self.attn is not None:
                x = self.attn.step(x)
            if self.proj is not None:
                self.proj.into(x, self.top)
                x = self.top
            self.head.into(x, self.logits)
        return self.logits

    def _lstm(self) -> None:
        g, i, f, o, gg = self.gates, self.g_i, self.g_f, self.g_o, self.g_g
        for l in range(self.layers):
            h, c = self.h_l[l], self.c_l[l]
            if l == 0:
                self.rec[0].add_into(h, g)                          # + h_0 @ W_hh0^T
            else:
                self.inp[l].into(self.xh_l[l], g)                   # [h_{l-1}, h_l] @ W^T + b
            self.g_ifo.sigmoid_()
            gg.tanh_()
            c.mul_(f).addcmul_(i, gg)                               # c = f c + i g
            torch.tanh(c, out=self.tmp)
            torch.mul(o, self.tmp, out=h)                           # h = o tanh(c)

    def _rnn(self) -> None:
        g = self.gates
        for l in range(self.layers):
            if l == 0:
                self.rec[0].add_into(self.h_l[0], g)
            else:
                self.inp[l].into(self.xh_l[l], g)
            torch.tanh(g, out=self.h_l[l])

    def _gru(self) -> None:
        # r, z from x and h together; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        r, z, n = self.g_r, self.g_z, self.g_n
        for l in range(self.layers):
            h = self.h_l[l]
            if l > 0:
                self.inp[l].into(self.h_l[l - 1], self.gates)       # W_i x + b_i
            self.rec[l].into(h, self.gh)                            # W_h h + b_h
            self.g_rz.add_(self.gh_rz).sigmoid_()
            n.addcmul_(r, self.gh_n).tanh_()
            h.sub_(n).mul_(z).add_(n)                               # h = n + z (h - n)


class WindowSteps:
    """--attention K, one step at a time (charnn.attention.WindowAttention's arithmetic).

    The last K keys and values live in a ring buffer ring (N, K, 2D+1) = [k | v | valid]; slot
    `nxt` takes the next step's. pos_by_slot[c] (K, K) holds each slot's distance bias when the
    newest entry sits in slot c, so reading the window in ring order needs no reordering.
    """

    def __init__(self, attn, batch_size: int):
        K, D, N = attn.window, attn.dim, batch_size
        self.K, self.D = K, D
        with torch.no_grad():
            self.W_qkv = attn.qkv.weight.detach().float().T.contiguous()         # (H, 3D)
            self.W_o = attn.out.weight.detach().float().T.contiguous()           # (D, H)
            pos = attn.pos.detach().float()
            slots = torch.arange(K)
            self.pos_by_slot = pos[(slots[:, None] - slots[None, :]) % K]       # (K, K)
        dev = self.W_qkv.device
        self.ring = torch.zeros(N, K, 2 * D + 1, device=dev)
        self.keys, self.values, self.valid = self.ring[..., :D], self.ring[..., D:2 * D], self.ring[..., 2 * D]
        self.qkv = torch.zeros(N, 3 * D, device=dev)
        self.out = torch.zeros(N, self.W_o.shape[1], device=dev)
        self.scale = 1.0 / math.sqrt(D)
        self.nxt = K - 1

    def load(self, window: torch.Tensor) -> None:
        """window (K-1, N, 2D+1), oldest first -> slots 0..K-2; the next step writes slot K-1."""
        self.ring[:, :self.K - 1].copy_(window.transpose(0, 1))
        self.ring[:, self.K - 1].zero_()
        self.nxt = self.K - 1

    def window(self) -> torch.Tensor:
        """The last K-1 entries, oldest first, as an RNNLM state's window (K-1, N, 2D+1)."""
        order = [(self.nxt + 1 + i) % self.K for i in range(self.K - 1)]
        return self.ring[:, order].transpose(0, 1).contiguous()

    def step(self, h: torch.Tensor) -> torch.Tensor:
        """h (N, H) -> h + W_o softmax(q . k / sqrt(D) + pos) v, (N, H) (a buffer)."""
        D, c = self.D, self.nxt
        torch.mm(h, self.W_qkv, out=self.qkv)
        q = self.qkv[:, :D]
        self.ring[:, c, :2 * D] = self.qkv[:, D:]                               # k, v of this step
        self.ring[:, c, 2 * D] = 1.0
        scores = torch.bmm(self.keys, q.unsqueeze(-1)).squeeze(-1)            # (N, K)
        scores = scores * self.scale + self.pos_by_slot[c]
        scores.masked_fill_(self.valid == 0, float("-inf"))
        att = torch.bmm(scores.softmax(-1).unsqueeze(1), self.values).squeeze(1)   # (N, D)
        torch.addmm(h, att, self.W_o, out=self.out)
        self.nxt = (c + 1) % self.K
        return self.out
