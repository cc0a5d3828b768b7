"""FedPer, the FedMRI paper's GD-GD: a shared body, a local head (Arivazhagan et al., "Federated
Learning with Personalization Layers", arXiv 1912.00818, 2019)."""

from __future__ import annotations

from fl.algorithms.heads import HeadSplit


class FedPer(HeadSplit):
    """All but the head (``fl.head``) is averaged."""

    name = "fedper"
    label = "FedPer (GD-GD)"
