"""The shared base of the algorithms that split the U-Net at its head (LG-FedAvg, FedPer, FedRep)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from fl.algorithms.base import Context, Server, head_names


def head_of(context: Context, default: str) -> str:
    """The head the run uses: ``fl.head`` when set, else the algorithm's ``default``."""
    return context.head or default


class HeadSplit(Server):
    """Shares the head (``share_head``) or everything but it; ``fl.head`` says what the head is, and
    ``default_head`` what it is when ``fl.head`` is null (the algorithm's source's choice)."""

    share_head: ClassVar[bool] = False
    default_head: ClassVar[str] = "stage"

    def shared_names(self, model: nn.Module) -> list[str]:
        names = list(model.state_dict())
        head = head_names(names, head_of(self.context, self.default_head))
        return [n for n in names if (n in head) == self.share_head]
