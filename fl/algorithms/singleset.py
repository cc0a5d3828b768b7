"""SingleSet: every site trains alone on its own data and nothing is shared (FedMRI's lower reference,
Feng et al., IEEE TMI 2022, Section IV)."""

from __future__ import annotations

from fl.algorithms.base import Server


class SingleSet(Server):
    """Nothing travels; each site's model is its own."""

    name = "singleset"
    label = "SingleSet"
    shared_patterns = ()
