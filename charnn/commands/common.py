"""Small helpers the commands share: parsing durations, opening models, writing data."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from charnn.errors import CharnnError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | None) -> float | None:
    """'90s', '10m', '2h', '1h30m' or a plain number of seconds -> seconds."""
    if text is None:
        return None
    t = text.strip().lower()
    try:
        value = float(t)
    except ValueError:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", t)
        if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", t):
            raise CharnnError(f"cannot read {text!r} as a duration: use e.g. 90s, 10m, 2h or 1h30m", 2)
        value = sum(float(n) * _UNITS[u] for n, u in parts)
    if not value > 0 or value != value:
        raise CharnnError(f"--time-budget must be positive, not {text!r}", 2)
    return value


def write_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(o: Any) -> Any:
    if isinstance(o, float):
        return None if o != o else o
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
    from charnn import checkpoint

    path = checkpoint.resolve(arg, prefer)
    ckpt = checkpoint.load(path, mmap=mmap)
    model, tok = checkpoint.build_model(ckpt)
    return path, ckpt, model, tok
