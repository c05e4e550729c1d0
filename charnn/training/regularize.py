"""AWD-LSTM's activation regularisers (Merity et al. 2017), added to the training loss.

The other regularisers change the forward pass and live in charnn.model (--weight-drop,
--locked-dropout, --embed-dropout); these two only add to the loss, so the Trainer asks the model
for the top layer's outputs h (B, T, H) and adds the penalty below to the cross-entropy.
"""

from __future__ import annotations

import torch


def activation_penalty(h: torch.Tensor, ar: float, tar: float) -> torch.Tensor:
    """h (B, T, H), the top layer's outputs before dropout ->
        ar * mean(h^2)                    large activations (AR)
      + tar * mean((h_t - h_{t-1})^2)     fast-changing ones, within the chunk (TAR)."""
    h = h.float()
    penalty = h.new_zeros(())
    if ar > 0:
        penalty = penalty + ar * h.pow(2).mean()
    if tar > 0 and h.shape[1] > 1:
        penalty = penalty + tar * (h[:, 1:] - h[:, :-1]).pow(2).mean()
    return penalty
