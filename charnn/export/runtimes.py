"""Loading an exported file with its own runtime, as a caller without charnn would: onnxruntime
for ONNX, plain torch.jit.load for TorchScript. Each gives step(ids, state[, cond]) on numpy arrays."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def runner(path: Path, fmt: str) -> tuple[Callable | None, str]:
    """(step function, runtime name), or (None, why not) when the runtime is not installed."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            return None, "not checked: onnxruntime is not installed (pip install 'charnn[export]')"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def onnx_step(*arrays):
            return session.run(None, dict(zip(names, arrays)))

        return onnx_step, f"onnxruntime {ort.__version__}"
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path))

    def ts_step(*arrays):
        with torch.no_grad():
            logits, state = module(*(torch.from_numpy(a) for a in arrays))
        return logits.numpy(), state.numpy()

    return ts_step, f"torch.jit {torch.__version__}"
