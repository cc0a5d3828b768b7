"""FedPer, the FedMRI paper's GD-GD: a shared body, a local head (Arivazhagan et al., "Federated
Learning with Personalization Layers", arXiv 1912.00818, 2019).

The FedMRI authors ran GD-GD with their config's ``except_last``: every weight is averaged except the
final 1x1 convolution's, so the head here is ``conv`` unless ``fl.head`` says otherwise
(``fl.head: stage`` keeps the whole last decoder stage local, a variant of ours).
"""

from __future__ import annotations

from fl.algorithms.heads import HeadSplit


class FedPer(HeadSplit):
    """All but the head (``fl.head``, default the 1x1 output conv) is averaged."""

    name = "fedper"
    label = "FedPer (GD-GD)"
    default_head = "conv"
