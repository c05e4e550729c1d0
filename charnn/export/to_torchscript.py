"""TorchScript: the step module traced (torch.jit.trace), the JSON document as the extra file
"charnn.json", written atomically. torch.jit.load(FILE) runs it with no charnn installed.

PyTorch marks torch.jit deprecated in favour of torch.export; the trace still works and a
TorchScript file still loads in libtorch (C++) and older PyTorch, which is what this format is
for, so the deprecation warning is silenced here rather than shown to every user."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any


def write(step: Any, example: tuple, out: Path, doc: dict[str, Any], opset: int) -> None:
    import torch

    from charnn.atomic import write_bytes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(step, example, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={"charnn.json": json.dumps(doc, ensure_ascii=False)})
    write_bytes(out, buf.getvalue())
