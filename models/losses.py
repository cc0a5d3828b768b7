"""The reconstruction losses a site trains with, by config name (``loss``)."""

from __future__ import annotations

import torch.nn.functional as F


def reconstruction_loss(kind: str):
    """The loss function by config name: ``mse`` (the authors' choice) or ``l1``."""
    losses = {"mse": F.mse_loss, "l1": F.l1_loss}
    if kind not in losses:
        raise ValueError(f"unknown loss {kind!r}; expected one of {sorted(losses)}")
    return losses[kind]
