"""The shared base of the algorithms that split the U-Net at its head (LG-FedAvg, FedPer, FedRep)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from fl.algorithms.base import Server, head_names


class HeadSplit(Server):
    """Shares the head (``share_head``) or everything but it; ``fl.head`` says what the head is."""

    share_head: ClassVar[bool] = False

    def shared_names(self, model: nn.Module) -> list[str]:
        names = list(model.state_dict())
        head = head_names(names, self.context.head)
        return [n for n in names if (n in head) == self.share_head]
