"""The recorded activations as files other tools read (LSTMVis-style: states per token, with the
tokens), and back.

npy: a folder of NumPy arrays plus one JSON file for the tokens:
    tokens.json      {"cell", "kinds", "pieces": [...], "meta": {...}}
    ids.npy          (T,) int64          loss.npy     (T,) float32, NaN for the first token
    top_ids.npy      (T, k) int64        top_probs.npy (T, k) float32
    state_h.npy      (L, T, H) float32   state_c.npy  (LSTM)
    gate_X.npy       (L, T, H) float32   X = i f g o (LSTM), r z n (GRU)
jsonl: one JSON object per token, in order:
    {"t": 0, "id": 17, "token": "T", "loss": null, "top": [[id, p], ...],
     "h": [[layer 0's H values], [layer 1's], ...], "c": ..., "f": ..., ...}
    values rounded to 5 decimals (a unit's value is read, not recomputed, from here)
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from charnn.atomic import write_bytes, write_text
from charnn.errors import CharnnError
from charnn.inspect.activations import Activations

DECIMALS = 5


def _file(kind: str) -> str:
    return f"state_{kind}.npy" if kind in ("h", "c") else f"gate_{kind}.npy"


def save_npy(acts: Activations, folder: Path | str) -> list[Path]:
    """Write the folder (made if missing); returns the files written, each atomically."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CharnnError(f"{folder} is a file: --format npy writes a folder of arrays", 2)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"ids.npy": acts.ids, "loss.npy": acts.loss, "top_ids.npy": acts.top_ids,
              "top_probs.npy": acts.top_probs, **{_file(k): v for k, v in acts.states.items()}}
    written = []
    for name, array in arrays.items():
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        write_bytes(folder / name, buf.getvalue())
        written.append(folder / name)
    head = {"cell": acts.cell, "kinds": acts.kinds, "pieces": acts.pieces, "meta": acts.meta}
    write_text(folder / "tokens.json", json.dumps(head, ensure_ascii=False) + "\n")
    return [folder / "tokens.json", *written]


def load_npy(folder: Path | str) -> Activations:
    folder = Path(folder)
    head = json.loads((folder / "tokens.json").read_text(encoding="utf-8"))
    load = lambda name: np.load(folder / name, allow_pickle=False)  # noqa: E731
    states = {k: load(_file(k)) for k in head["kinds"]}
    return Activations(head["cell"], load("ids.npy"), head["pieces"], states, load("loss.npy"),
                       load("top_ids.npy"), load("top_probs.npy"), head.get("meta", {}))


def jsonl_lines(acts: Activations) -> Iterator[str]:
    """One line of strict JSON per token (NaN loss -> null), newline included."""
    # rounded in float64, so the JSON holds 0.30777, not float32's 0.3077700138092041
    rounded = {k: np.round(v.astype(np.float64), DECIMALS).transpose(1, 0, 2) for k, v in acts.states.items()}
    for t, (i, piece) in enumerate(zip(acts.ids.tolist(), acts.pieces)):
        loss = float(acts.loss[t])
        row = {"t": t, "id": i, "token": piece, "loss": round(loss, DECIMALS) if math.isfinite(loss) else None,
               "top": [[int(a), round(float(p), DECIMALS)] for a, p in zip(acts.top_ids[t], acts.top_probs[t])]}
        row.update({k: v[t].tolist() for k, v in rounded.items()})
        yield json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"


def read_jsonl(lines: Iterable[str]) -> Activations:
    """Activations back from jsonl_lines' output (the cell is told by the kinds present)."""
    rows = [json.loads(line) for line in lines if line.strip()]
    if not rows:
        raise CharnnError("no tokens in the JSON lines")
    kinds = [k for k in rows[0] if k not in ("t", "id", "token", "loss", "top")]
    cell = "lstm" if "c" in kinds else "gru" if "r" in kinds else "rnn"
    states = {k: np.asarray([r[k] for r in rows], dtype=np.float32).transpose(1, 0, 2) for k in kinds}
    loss = np.asarray([np.nan if r["loss"] is None else r["loss"] for r in rows], dtype=np.float32)
    top = [r["top"] for r in rows]
    return Activations(cell, np.asarray([r["id"] for r in rows], dtype=np.int64), [r["token"] for r in rows],
                       states, loss, np.asarray([[a for a, _ in t] for t in top], dtype=np.int64),
                       np.asarray([[p for _, p in t] for t in top], dtype=np.float32))
