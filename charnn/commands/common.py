"""Small helpers the commands share: formatting durations, opening models, writing JSON."""

from __future__ import annotations

import json
import math
import sys
from typing import Any


def write_json(obj: Any) -> None:
    """One line of strict JSON on stdout: NaN and infinities (not JSON) become null."""
    sys.stdout.write(json.dumps(jsonable(obj), allow_nan=False) + "\n")
    sys.stdout.flush()


def jsonable(o: Any) -> Any:
    """Plain JSON data: non-finite floats -> None, tuples -> lists, other objects -> str."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if o is None or isinstance(o, (str, int, bool)):
        return o
    if getattr(o, "ndim", None) == 0 and hasattr(o, "item"):   # numpy / torch scalars
        return jsonable(o.item())
    return str(o)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def load_model(arg: str | None, prefer: str = "best.pt", mmap: bool = False):
    """RUN|CHECKPOINT (or the newest run) -> (path, checkpoint dict, model, tokenizer)."""
    from charnn.run import load

    run = load(arg, prefer, mmap=mmap)
    return run.path, run.ckpt, run.model, run.tokenizer
