"""The activations as one self-contained HTML page (template: charnn.inspect.page_template).

The page shows the text with each token's background coloured by a chosen unit (layer, kind,
unit), the model's top guesses and the loss it paid at each token, and the units --find found,
which jump the picker to them. Its data sits in the page as JSON; each (kind, layer) array is
stored as bytes, 0..255 between its minimum and maximum, unit-major (the values of one unit over
the text are contiguous), base64-encoded: a quarter of float32's size, and finer than the
colours it is shown with.
"""

from __future__ import annotations

import base64
import html
import json
import math

import numpy as np

from charnn.inspect.activations import Activations
from charnn.inspect.page_template import TEMPLATE
from charnn.inspect.properties import DESCRIPTIONS


def quantize(values: np.ndarray) -> dict:
    """(T, H) float -> {"lo", "hi", "b64"}: uint8 codes of the (H, T) transpose."""
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo if hi > lo else 1.0
    codes = np.rint((values.T - lo) / span * 255).clip(0, 255).astype(np.uint8)   # (H, T)
    return {"lo": lo, "hi": hi, "b64": base64.b64encode(codes.tobytes()).decode("ascii")}


def start_unit(acts: Activations, found: list[dict] | None) -> dict:
    """The unit the page opens on: the best-correlated found unit, else layer 0's h unit 0."""
    best = max((u for f in found or [] for u in f["units"]), key=lambda u: abs(u["r"]), default=None)
    return {k: best[k] for k in ("kind", "layer", "unit")} if best else {"kind": "h", "layer": 0, "unit": 0}


def page_data(acts: Activations, vocab_text, found: list[dict] | None = None, title: str = "charnn") -> dict:
    """The page's JSON data. vocab_text(id) -> the text of one vocabulary entry (guesses are
    shown with it; only the entries that appear among the guesses are included)."""
    used = sorted(set(acts.top_ids.ravel().tolist()))
    local = {v: k for k, v in enumerate(used)}                            # vocabulary id -> page index
    finite = acts.loss[np.isfinite(acts.loss)]
    guesses = [[[local[int(v)], round(float(p), 4)] for v, p in zip(ids, probs)]
               for ids, probs in zip(acts.top_ids, acts.top_probs)]
    mean = float(finite.mean()) if len(finite) else float("nan")
    facts = (f"{acts.cell.upper()}, {acts.layers} x {acts.hidden}; {len(acts.ids):,} tokens; "
             f"mean loss {mean:.3f} nats/token" if math.isfinite(mean) else "")
    return {
        "title": title, "facts": facts, "layers": acts.layers, "hidden": acts.hidden,
        "tokens": len(acts.ids), "kinds": acts.kinds, "pieces": acts.pieces, "ids": acts.ids.tolist(),
        "loss": [round(float(x), 4) if math.isfinite(x) else None for x in acts.loss],
        "loss_scale": float(np.percentile(finite, 98)) if len(finite) else 1.0,
        "guesses": guesses, "vocab": [_display(vocab_text(v)) for v in used],
        "arrays": {f"{k}:{l}": quantize(v[l]) for k, v in acts.states.items() for l in range(v.shape[0])},
        "found": [{"property": f["property"], "description": DESCRIPTIONS.get(f["property"], f["property"]),
                   "units": f["units"]} for f in found or []],
        "start": start_unit(acts, found),
    }


def _display(token: str) -> str:
    """A lone byte carried as a surrogate escape (U+DC80..U+DCFF) -> the text '\\xNN'."""
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in token)


def render(data: dict) -> str:
    """The page's HTML. The JSON is made safe to sit inside a <script> element: '<', '>' and
    '&' are written as \\u escapes, so no text in the data can close the element."""
    blob = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    blob = blob.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return TEMPLATE.replace("__CHARNN_TITLE__", html.escape(data["title"])).replace("__CHARNN_DATA__", blob)


def build_page(acts: Activations, vocab_text, found: list[dict] | None = None, title: str = "charnn") -> str:
    return render(page_data(acts, vocab_text, found, title))
