"""The regime map's rows and the paper's claims between them, and how one claim is tested in one regime.

A claim is "the first row beats the second" in mean PSNR over the sites, with the trained model (the
seed) as the unit (:func:`utils.stats.seed_comparison`); its verdict in a regime is holds / does not
hold / not detectable, or "no verdict" with one seed. The paper's claims across the whole map are a
family of tests, corrected together by Holm's and by Benjamini-Hochberg's procedure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from study.claims import verdict_word
from study.formats import p_value, seeds_count, signed
from study.rows import Row
from utils.stats import SeedComparison, benjamini_hochberg, holm


def _one_line(text: str) -> str:
    """Text that goes into a table cell or a heading: a line break would end it."""
    if "\n" in text or "\r" in text:
        raise ValueError("must be one line (no line break)")
    return text


OneLine = Annotated[str, AfterValidator(_one_line)]


class Regime(BaseModel):
    """One column of the map: a regime and the study folder that measured it."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.-]+$")
    title: OneLine = Field(min_length=1, max_length=200)
    folder: str = Field(min_length=1, max_length=500, description="results folder, relative to the map")
    setting: OneLine = Field("", max_length=1000, description="data and optimiser, in words")


class Side(BaseModel):
    """One side of a control: a row of one regime."""

    model_config = ConfigDict(extra="forbid")

    regime: str = Field(min_length=1, max_length=60, description="a regime's key")
    row: str = Field(min_length=1, max_length=60, description="FedMRI or a row of the map")


class Control(BaseModel):
    """A comparison across two columns on the same data (e.g. one change of training, the rest equal):
    ``first`` − ``second`` with the seed as the unit."""

    model_config = ConfigDict(extra="forbid")

    text: OneLine = Field(min_length=1, max_length=300)
    first: Side
    second: Side


class RegimeMap(BaseModel):
    """``regimes.yaml``: the regimes in column order, and the controls across them."""

    model_config = ConfigDict(extra="forbid")

    regimes: list[Regime] = Field(min_length=1, max_length=20)
    controls: list[Control] = Field(default_factory=list, max_length=40)


# Rows of the map, each found by its algorithm and variant overrides, and the claims between them.
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "FedMRI beta = 0": ("fedmri", ("fl.fedmri.beta=0",)),
    "FedMRI beta = 25": ("fedmri", ("fl.fedmri.beta=25",)),
    "FedAvg": ("fedavg", ()),
    "SingleSet": ("singleset", ()),
    "Centralized": ("centralized", ()),
    "FedPer (GD-GD)": ("fedper", ()),
    "FL-MRCM": ("flmrcm", ()),
}


ZERO_FILLED = "zero-filled input"  # a claim's second: the first row's own zero-filled input, volume by volume


@dataclass(frozen=True)
class Claim:
    """``first`` beats ``second`` in mean PSNR over the sites (None: the regime's FedMRI); ``short``
    names it in a sentence."""

    text: str
    first: str | None
    second: str | None
    short: str
    premise: bool = False  # a condition of the paper's setting, not a claim of the paper


CLAIMS = (
    Claim("The models learn: FedMRI beats the zero-filled input (a condition for every claim below)", None,
          ZERO_FILLED, "FedMRI beats its zero-filled input", premise=True),
    Claim("Collaboration pays: Centralized beats SingleSet (the paper's premise)", "Centralized",
          "SingleSet", "Centralized beats SingleSet", premise=True),
    Claim("FedMRI beats SingleSet (each site alone)", None, "SingleSet", "FedMRI beats SingleSet"),
    Claim("FedMRI beats FedAvg", None, "FedAvg", "FedMRI beats FedAvg"),
    Claim("FedMRI beats FedPer (GD-GD)", None, "FedPer (GD-GD)", "FedMRI beats FedPer"),
    Claim("FedMRI beats FL-MRCM", None, "FL-MRCM", "FedMRI beats FL-MRCM"),
    Claim("Removing the contrastive term is worse (FedMRI beats FedMRI with beta = 0)", None,
          "FedMRI beta = 0", "FedMRI beats its beta = 0 variant"),
    Claim("Sharing the encoder beats sharing the whole model, without the term on both (FedMRI beta = 0 "
          "beats FedAvg)", "FedMRI beta = 0", "FedAvg", "FedMRI beta = 0 beats FedAvg"),
    Claim("FedMRI with beta scaled to the paper's per-weight pull (beta = 25 at 16 channels) beats FedAvg",
          "FedMRI beta = 25", "FedAvg", "FedMRI beta = 25 beats FedAvg"),
)  # fmt: skip


def compare(rows: dict[str, Row], first: str | None, second: str | None) -> SeedComparison | None:
    """``first`` − ``second`` in mean PSNR over the sites, seed as the unit (None where a row is missing);
    ``ZERO_FILLED`` on either side stands for the zero-filled input of FedMRI's test volumes (the same
    volumes and masks as every row's of a seed)."""

    def side(name: str | None) -> tuple[Row | None, str]:  # a row's model, or FedMRI's zero-filled input
        if name == ZERO_FILLED:
            return rows.get("FedMRI"), "zero_filled"
        return rows.get(name or "FedMRI"), "model"

    (a, own), (b, which) = side(first), side(second)
    if a is None or b is None:
        return None
    return a.versus(b, "mean", "psnr", which=which, own=own)


def verdict(result: SeedComparison | None) -> str:
    """holds / does not hold / not detectable for "the first row beats the second"; not run."""
    return "not run" if result is None else verdict_word(result, good="better")


def cell(result: SeedComparison | None) -> str:
    """A map cell: the verdict, then the difference ± interval in dB, p and the seeds."""
    if result is None:
        return "not run"
    return (
        f"**{verdict(result)}**: {signed(result.difference, 2)} dB "
        f"(p={p_value(result)}, {seeds_count(result.difference.n)})"
    )


def paper_claim_tests(
    spec: RegimeMap, by_regime: dict[str, dict[str, Row]]
) -> list[tuple[Claim, Regime, SeedComparison, float, float]]:
    """Every (claim of the paper, regime) cell with a test (two seeds or more), with its p-value adjusted
    over all of them by Holm's step-down correction and by Benjamini-Hochberg's: the family is the
    paper's claims across the map (the premises, conditions of the setting, are not in it)."""
    cells = [
        (claim, regime, result)
        for claim in CLAIMS
        if not claim.premise
        for regime in spec.regimes
        if (result := compare(by_regime[regime.key], claim.first, claim.second)) is not None
        and not math.isnan(result.p_value)
    ]
    p_values = [result.p_value for _, _, result in cells]
    return [(*cell, h, q) for cell, h, q in zip(cells, holm(p_values), benjamini_hochberg(p_values))]


def numbers(result: SeedComparison | None, word: str) -> dict | None:
    """``map.json``'s record of one comparison: the difference, its interval, per seed, p and ``word``,
    its verdict."""
    if result is None:
        return None
    return {
        "difference": result.difference.mean,
        "half_width": result.difference.half_width,
        "per_seed": {str(s): d for s, d in result.per_seed.items()},
        "p_value": result.p_value,
        "verdict": word,
    }
