"""What a study can train: every registered algorithm, and the FedMRI ablations, each a list of config
overrides with a label for the tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from utils.errors import UserError

ABLATIONS = ("sharing", "contrastive", "beta", "negatives", "local_epochs", "domain", "clipped")
ABLATION_TITLES = {"domain": "image only vs dual domain (FedMRI and FedAvg)"}
FEDMRI = ["fl.algorithm=fedmri"]


def labels() -> dict[str, str]:
    """Every algorithm ``fl.algorithm`` accepts (registered ones included), with its table label."""
    from fl.options import algorithm_label, algorithm_names

    return {name: algorithm_label(name) for name in algorithm_names()}


@dataclass
class Variant:
    """One configuration to train: a label for the tables, a run name and its overrides."""

    label: str
    key: str
    overrides: list[str]
    families: list[str] = field(default_factory=list)  # "comparison" and/or ablation names


def choose(text: str, allowed: Sequence[str], what: str) -> list[str]:
    """The comma-separated names of ``text`` (``all``: every allowed one); a :class:`UserError` naming
    ``--what`` for a name not allowed."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["all"]:
        return list(allowed)
    unknown = [t for t in items if t not in allowed]
    if unknown:
        raise UserError(f"--{what}: unknown {', '.join(unknown)}; expected some of {', '.join(allowed)}")
    return items


DEFAULT_BETAS = (1.0, 10.0, 100.0)


@dataclass
class AblationValues:
    """The values an ablation sweeps, where the command line chooses them."""

    local_epochs: list[int]
    betas: list[float]


def _sharing(base: Any, values: AblationValues) -> list[Variant]:
    return [
        Variant("share encoder (FedMRI)", "fedmri", FEDMRI + ["fl.fedmri.share=encoder"]),
        Variant("share whole model", "fedmri-share-whole", FEDMRI + ["fl.fedmri.share=whole"]),
        Variant(
            "share all but the 1x1 head (except_last)",
            "fedmri-share-all-but-conv",
            FEDMRI + ["fl.fedmri.share=all_but_head", "fl.head=conv"],
        ),
        Variant(
            "share all but the last decoder stage (ours)",
            "fedmri-share-all-but-stage",
            FEDMRI + ["fl.fedmri.share=all_but_head", "fl.head=stage"],
        ),
    ]


def _contrastive(base: Any, values: AblationValues) -> list[Variant]:
    beta = base.fl.fedmri.beta
    with_con = beta if beta > 0 else 100.0
    return [
        Variant(
            f"with L_con (beta={with_con:g})",
            f"fedmri-beta{with_con:g}",
            FEDMRI + [f"fl.fedmri.beta={with_con}"],
        ),
        Variant("without L_con (beta=0)", "fedmri-beta0", FEDMRI + ["fl.fedmri.beta=0"]),
    ]


def _beta(base: Any, values: AblationValues) -> list[Variant]:
    return [
        Variant(f"beta={b:g}", f"fedmri-beta{b:g}", FEDMRI + [f"fl.fedmri.beta={b:g}"]) for b in values.betas
    ]


def _negatives(base: Any, values: AblationValues) -> list[Variant]:
    return [
        Variant(f"negatives: {n}", f"fedmri-negatives-{n}", FEDMRI + [f"fl.fedmri.negatives={n}"])
        for n in ("all", "self")
    ]


def _domain(base: Any, values: AblationValues) -> list[Variant]:
    names = labels()
    return [
        Variant(f"{names[a]} ({label})", f"{a}{suffix}", [f"fl.algorithm={a}", f"model.kind={kind}"])
        for a in ("fedmri", "fedavg")
        for kind, label, suffix in (("unet", "image", ""), ("dual_domain", "dual-domain", "-dual"))
    ]


def _clipped(base: Any, values: AblationValues) -> list[Variant]:
    return [Variant("FedMRI, clipped L_con (ours)", "fedmri-clipped", FEDMRI + ["fl.fedmri.variant=clipped"])]


def _local_epochs(base: Any, values: AblationValues) -> list[Variant]:
    return [Variant(f"E={e}", f"fedmri-e{e}", FEDMRI + [f"fl.local_epochs={e}"]) for e in values.local_epochs]


ABLATION_VARIANTS: dict[str, Callable[[Any, AblationValues], list[Variant]]] = {
    "sharing": _sharing,
    "contrastive": _contrastive,
    "beta": _beta,
    "negatives": _negatives,
    "local_epochs": _local_epochs,
    "domain": _domain,
    "clipped": _clipped,
}


def variants(
    algorithms: list[str],
    ablations: list[str],
    base: Any,
    local_epochs: list[int],
    betas: Sequence[float] = DEFAULT_BETAS,
) -> list[Variant]:
    """The variants to train, in table order; FedMRI ablations override ``fl.fedmri.*`` (the local_epochs
    ablation trains ``local_epochs``, the beta ablation ``betas``)."""
    values = AblationValues(list(local_epochs), list(betas))
    names = labels()
    out = [Variant(names[a], a, [f"fl.algorithm={a}"], ["comparison"]) for a in algorithms]
    for ablation in ablations:
        for variant in ABLATION_VARIANTS[ablation](base, values):
            variant.families.append(ablation)
            out.append(variant)
    return out
