"""Small helpers the commands share: formatting durations, opening models, writing JSON."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any


def at_least(low: int, **values: int | None) -> None:
    """One-line usage errors for numeric options below their minimum (given by name:
    seq_len=0 -> `--seq-len must be at least 1`); None means not given."""
    from charnn.errors import CharnnError

    for name, v in values.items():
        if v is not None and v < low:
            raise CharnnError(f"--{name.replace('_', '-')} must be at least {low}", 2)


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


_ESCAPE = re.compile(r"\\(n|t|r|0|\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\"}


def unescape(text: str) -> str:
    """Backslash escapes typed on a command line -> the characters: \\n \\t \\r \\0 \\\\ \\xNN
    \\uNNNN \\UNNNNNNNN. Everything else, non-ASCII text included, stays as typed (unlike
    Python's unicode_escape codec, which reads the text as Latin-1 and garbles 'é')."""
    return _ESCAPE.sub(_unescape_one, text)


def _unescape_one(m: re.Match) -> str:
    code = m[1]
    if code in _SIMPLE:
        return _SIMPLE[code]
    n = int(code[1:], 16)
    return chr(n) if n <= 0x10FFFF else m[0]      # past Unicode: left as typed


def fmt_size(n: float) -> str:
    """Bytes for people: 3.8 kB, 1.12 MB, 1.0 GB (decimal units, as file managers show)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}" if n < 100 * scale else f"{n / scale:.0f} {unit}"
    return f"{int(n)} B"


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
