"""FedAvg: the whole model is averaged every round (McMahan et al., "Communication-Efficient Learning
of Deep Networks from Decentralized Data", AISTATS 2017)."""

from __future__ import annotations

from fl.algorithms.base import Server


class FedAvg(Server):
    """Every state-dict entry is shared; plain local training; weighted average."""

    name = "fedavg"
    label = "FedAvg"
    shared_patterns = ("*",)
