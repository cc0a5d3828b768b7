"""FedBN: everything is averaged except the normalisation layers (Li et al., "FedBN: Federated Learning
on Non-IID Features via Local Batch Normalization", ICLR 2021)."""

from __future__ import annotations

from torch import nn

from fl.algorithms.base import Server, norm_names


class FedBN(Server):
    """Shares all but the parameters and statistics of every normalisation layer.

    Under the default ``model.norm: instance`` (InstanceNorm without affine parameters or running
    statistics) the U-Net has nothing to keep local, and FedBN is exactly FedAvg; it differs with
    ``model.norm: instance_affine`` or ``batch``.
    """

    name = "fedbn"
    label = "FedBN"

    def shared_names(self, model: nn.Module) -> list[str]:
        local = norm_names(model)
        return [n for n in model.state_dict() if n not in local]
