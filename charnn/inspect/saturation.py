"""Gate saturation (Karpathy, Johnson and Fei-Fei 2015, Figure 3): how often each sigmoid gate
sits near one of its ends. A gate value below 0.1 is left-saturated (the gate is shut: an
LSTM forget gate there forgets, an input gate lets nothing in); above 0.9 right-saturated (wide
open: a forget gate there remembers). Units that are right-saturated most of the time are the
ones that carry information a long way; a gate that is never saturated acts more softly.
"""

from __future__ import annotations

from charnn.inspect.activations import Activations
from charnn.inspect.cells import SIGMOID_GATES

LOW, HIGH = 0.1, 0.9


def saturation(acts: Activations, low: float = LOW, high: float = HIGH) -> list[dict]:
    """Per layer and sigmoid gate (LSTM i f o, GRU r z; none for a plain RNN):
    {"layer", "gate", "left", "right"}: the share of (token, unit) pairs below `low` and above
    `high`, and "units_left", "units_right": the same share per unit over the tokens, (H,) each,
    for the paper's scatter of units."""
    out = []
    for gate in SIGMOID_GATES[acts.cell]:
        values = acts.states[gate]                                   # (L, T, H)
        for layer in range(values.shape[0]):
            v = values[layer]                                        # (T, H)
            left, right = (v < low).mean(0), (v > high).mean(0)      # (H,) per unit
            out.append({"layer": layer, "gate": gate, "left": float(left.mean()),
                        "right": float(right.mean()), "units_left": left.tolist(),
                        "units_right": right.tolist()})
    out.sort(key=lambda e: (e["layer"], SIGMOID_GATES[acts.cell].index(e["gate"])))
    return out
