"""Matrix products for the step-wise sampler, in fp32 or dynamic int8.

Both kinds compute y = x @ W^T + b for W held as nn.Linear holds it, (out, in), and offer
    m.into(x, out)       out = x @ W^T + b        (out a preallocated (N, out) buffer)
    m.add_into(x, out)   out += x @ W^T           (no bias)

Dense (fp32) runs one addmm on W^T stored (in, out) row-major, straight into the buffer.

Int8 (`--quantize int8`) quantizes W once, per output row (symmetric int8, one fp32 scale per
row), and x at every call (per tensor, from its own min/max: "dynamic"; the N rows of a batch
share that scale, so a stream's result depends slightly on its batch-mates), and multiplies in
int8 with int32 accumulation through PyTorch's fbgemm kernel (torch.ops.quantized.linear_dynamic
on weights packed by linear_prepack; the "x86" engine uses fbgemm for it). At batch 1 a step
is bound by reading the weights, and int8 weights are a quarter of the bytes.

PyTorch marks its quantized *tensor* type deprecated: creating one (here, once, to pack the
weights) raises a UserWarning. The packed-weight ops themselves are not deprecated and warn
nothing, so the warning is silenced at that one place rather than shown to every user.
"""

from __future__ import annotations

import warnings

import torch

from charnn.errors import CharnnError

QUANTIZE = ("none", "int8")

# A matrix smaller than this stays fp32 under --quantize int8: the int8 kernel's fixed cost per call
# (~7-10 us: quantizing x, requantizing the result) outweighs reading fewer bytes until the matrix
# holds about 1 MB of fp32 weights (measured at batch 1: 65x512 output layer 5 us fp32, 23 us int8;
# 1024x256 13 us both; 2048x512 57 us fp32, 24 us int8). A 2x512 LSTM has its recurrent weights in
# int8 and its 65-token output layer in fp32; a 10,000-word output layer would be int8.
INT8_MIN_WEIGHTS = 1 << 18

# The one warning silenced (see the module docstring), matched by its text so no other can hide.
_DEPRECATED = r".*quantized tensor creation functions .* are deprecated"

# Activations quantized to 7 bits instead of 8 ("reduce_range"): fbgemm's AVX2 kernels sum pairs
# of u8*s8 products in int16, which 8-bit activations can overflow; 7 bits are safe everywhere.
REDUCE_RANGE = True


class Dense:
    """fp32: W (out, in), b (out,) or None."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor | None = None):
        self.Wt = W.detach().float().t().contiguous()          # (in, out)
        self.b = None if b is None else b.detach().float().contiguous()
        self.shape = tuple(W.shape)

    def into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        if self.b is None:
            torch.mm(x, self.Wt, out=out)
        else:
            torch.addmm(self.b, x, self.Wt, out=out)

    def add_into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        out.addmm_(x, self.Wt)


class Int8:
    """Dynamic int8: W quantized per output row once; x quantized at each call."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor | None = None):
        W = W.detach().float().contiguous()                     # (out, in)
        self.shape = tuple(W.shape)
        scale = (torch.maximum(W.amax(1), -W.amin(1)) / 127).clamp_min(1e-12)   # (out,): max |w|
        engine = _engine()
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_DEPRECATED, category=UserWarning)
                q = torch.quantize_per_channel(W, scale.double(), torch.zeros(len(scale), dtype=torch.long),
                                               0, torch.qint8)
            with _Engine(engine):
                self.packed = torch.ops.quantized.linear_prepack(
                    q, None if b is None else b.detach().float().contiguous())
        except RuntimeError as e:
            raise CharnnError(f"--quantize int8 is not available in this PyTorch build "
                              f"({str(e).splitlines()[0][:120]})") from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, REDUCE_RANGE)

    def into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        out.copy_(self(x))

    def add_into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        out.add_(self(x))


class _Engine:
    """Select a quantized engine for the packing (the packed format belongs to the engine)."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.old = torch.backends.quantized.engine
        torch.backends.quantized.engine = self.name

    def __exit__(self, *exc):
        torch.backends.quantized.engine = self.old


def _engine() -> str:
    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm"):       # x86 CPUs: fbgemm's int8 GEMM (AVX2 / AVX-512 / VNNI)
        if name in engines:
            return name
    raise CharnnError("--quantize int8 needs PyTorch's fbgemm kernels (an x86 CPU build of PyTorch); "
                      f"this build offers only {', '.join(e for e in engines if e != 'none') or 'none'}")


def check(quantize: str | None, device) -> str:
    """Validate a --quantize value for a device; returns 'none' or 'int8'."""
    q = quantize or "none"
    if q not in QUANTIZE:
        raise CharnnError(f"unknown --quantize {q!r}: choose one of {', '.join(QUANTIZE)}", 2)
    if q == "int8" and torch.device(device).type != "cpu":
        raise CharnnError("--quantize int8 runs on the CPU: leave out --device or give --device cpu", 2)
    if q == "int8":
        _engine()
    return q


def matmul(W: torch.Tensor, b: torch.Tensor | None = None, quantize: str = "none"):
    """The product for weights W (out, in): int8 when asked for and W is large enough to gain."""
    return Int8(W, b) if quantize == "int8" and W.numel() >= INT8_MIN_WEIGHTS else Dense(W, b)
