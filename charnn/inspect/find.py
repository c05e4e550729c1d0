"""Find the interpretable units: correlate every unit's value over a text with each simple
property of that text (charnn.inspect.properties) and keep the units that track it best.

Pearson correlation over the tokens: r = mean(za * zp), with za and zp the unit and the property
standardised over the text. A unit or property that does not vary has r = 0. The sign says
whether the unit rises (r > 0) or falls (r < 0) with the property; units are ranked by |r|.
"""

from __future__ import annotations

import numpy as np

from charnn.inspect.activations import Activations

# the kinds of state searched by default: hidden and (LSTM) cell states, as in Karpathy et al.
STATE_KINDS = ("h", "c")


def correlate(values: np.ndarray, prop: np.ndarray) -> np.ndarray:
    """values (T, N), prop (T,) -> Pearson r of each column with prop, (N,) float64.
    Centred in float32 (a long text times thousands of units is large), summed in float64."""
    v = values.astype(np.float32)
    v -= v.mean(0, dtype=np.float64).astype(np.float32)          # (T, N), a copy centred in place
    p = prop.astype(np.float64) - prop.mean()                     # (T,)
    sq = np.einsum("tn,tn->n", v, v, dtype=np.float64)            # (N,) without a (T, N) temporary
    denom = np.sqrt(sq * (p @ p))                                 # (N,)
    num = (p.astype(np.float32) @ v).astype(np.float64)         # (N,)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 1e-12, num / np.where(denom > 0, denom, 1.0), 0.0)
    return np.clip(r, -1.0, 1.0)


def find_units(acts: Activations, props: dict[str, np.ndarray], top: int = 3,
               kinds: tuple[str, ...] = STATE_KINDS) -> list[dict]:
    """For each property, the `top` units that track it best:
    [{"property", "varies", "units": [{"kind", "layer", "unit", "r"}, ...]}, ...].
    A property that is constant over the text (no quotes in it, say) has "varies": False and no
    units: nothing can be learned about it from this text."""
    kinds = tuple(k for k in kinds if k in acts.states)
    L, T, H = acts.states["h"].shape
    # all searched units side by side: (T, K*L*H), column j = (kind, layer, unit) in that order
    columns = np.concatenate([acts.states[k].transpose(1, 0, 2).reshape(T, L * H) for k in kinds], axis=1)
    report = []
    for name, prop in props.items():
        entry: dict = {"property": name, "varies": bool(np.ptp(prop) > 0) if T else False, "units": []}
        if entry["varies"]:
            r = correlate(columns, prop)
            for j in np.argsort(-np.abs(r), kind="stable")[:top]:
                kind, rest = divmod(int(j), L * H)
                layer, unit = divmod(rest, H)
                entry["units"].append({"kind": kinds[kind], "layer": layer, "unit": unit, "r": float(r[j])})
        report.append(entry)
    return report
