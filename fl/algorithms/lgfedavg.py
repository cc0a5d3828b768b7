"""LG-FedAvg: local representations, a global head (Liang et al., "Think Locally, Act Globally:
Federated Learning with Local and Global Representations", arXiv 2001.01523, 2020).

The paper keeps the lower layers (the representation) at each device and averages the top layers
(the global model, more than the last layer in its experiments); on the U-Net the top is the last
decoder stage, ``fl.head: stage`` (``conv``: only the 1x1 output conv is averaged).
"""

from __future__ import annotations

from fl.algorithms.heads import HeadSplit


class LGFedAvg(HeadSplit):
    """The head (``fl.head``, default the last decoder stage) is averaged; the body stays at each site."""

    name = "lgfedavg"
    label = "LG-FedAvg"
    share_head = True
    default_head = "stage"
