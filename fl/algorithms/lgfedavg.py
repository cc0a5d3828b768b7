"""LG-FedAvg: local representations, a global head (Liang et al., "Think Locally, Act Globally:
Federated Learning with Local and Global Representations", arXiv 2001.01523, 2020)."""

from __future__ import annotations

from fl.algorithms.heads import HeadSplit


class LGFedAvg(HeadSplit):
    """The head (``fl.head``) is averaged; the body stays at each site."""

    name = "lgfedavg"
    label = "LG-FedAvg"
    share_head = True
