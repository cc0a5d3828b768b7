"""Controls across the regime map's columns: a row of one regime against a row of another trained on the
same data (the same test volumes and masks, seed by seed), e.g. a column that changes one thing of
another's training. ``regimes.yaml`` lists them under ``controls``:

    controls:
      - text: FedMRI against FedMRI beta = 0 with the optimiser's state reset every round
        first: {regime: template2-paper, row: FedMRI}
        second: {regime: template2-reset, row: FedMRI beta = 0}

Each is ``first`` − ``second`` in mean PSNR over the sites with the seed as the unit, over the seeds both
have (:func:`utils.stats.seed_comparison`, as every cell of the map). Two columns whose paired test
volumes have different zero-filled inputs were not trained on the same data, and a control between them
is refused.
"""

from __future__ import annotations

import math

from study.claims import verdict_word
from study.formats import p_value, seeds_count, signed
from study.map_claims import METHODS, Control, RegimeMap, numbers
from study.rows import Row
from utils.errors import UserError
from utils.stats import SeedComparison
from utils.tables import markdown

ROW_NAMES = ("FedMRI", *METHODS)


def check_controls(spec: RegimeMap, where: str) -> None:
    """One-line errors for a control naming a regime or a row the map does not have."""
    keys = {r.key for r in spec.regimes}
    for i, control in enumerate(spec.controls):
        for side in ("first", "second"):
            found = getattr(control, side)
            if found.regime not in keys:
                raise UserError(
                    f"{where}: controls[{i}].{side}.regime: no regime {found.regime!r} (the map's: "
                    f"{', '.join(sorted(keys))})"
                )
            if found.row not in ROW_NAMES:
                raise UserError(
                    f"{where}: controls[{i}].{side}.row: no row {found.row!r} (expected one of "
                    f"{', '.join(ROW_NAMES)})"
                )


def control_result(
    control: Control, by_regime: dict[str, dict[str, Row]], where: str
) -> SeedComparison | None:
    """``first`` − ``second`` with the seed as the unit; None while either row has no run (or no seed in
    common). A :class:`UserError` where the two rows' paired volumes were not made from the same data."""
    first = by_regime[control.first.regime].get(control.first.row)
    second = by_regime[control.second.regime].get(control.second.row)
    if first is None or second is None:
        return None
    inputs = first.pairs(second, "mean", "psnr", which="zero_filled", own="zero_filled")
    for seed, (a, b) in inputs.items():
        if any(not math.isclose(x, y, rel_tol=0, abs_tol=1e-6) for x, y in zip(a, b)):
            raise UserError(
                f"{where}: control {control.text!r}: {control.first.regime} and {control.second.regime} "
                f"were not trained on the same data (seed {seed}: the zero-filled inputs of their test "
                "volumes differ)"
            )
    return first.versus(second, "mean", "psnr")


def control_verdict(result: SeedComparison | None) -> str:
    """first ahead / second ahead / not detectable (at the map's level), or why there is none."""
    return "not run" if result is None else verdict_word(result, "better", ("first ahead", "second ahead"))


def controls_markdown(spec: RegimeMap, results: list[SeedComparison | None]) -> str:
    """``map.md``'s section "Across columns" (empty without controls)."""
    if not spec.controls:
        return ""
    folders = {r.key: r.folder for r in spec.regimes}  # as the regimes' list names them
    body = []
    for control, result in zip(spec.controls, results):
        sides = [f"{s.row} (`{folders[s.regime]}`)" for s in (control.first, control.second)]
        amount = "–"
        if result is not None:
            amount = (
                f"{signed(result.difference, 2)} dB (p={p_value(result)}, {seeds_count(result.difference.n)})"
            )
        body.append([control.text, *sides, amount, control_verdict(result)])
    return (
        "\n## Across columns\n\nControls between two columns trained on the same data, seed by seed (the "
        "same test volumes and masks): first − second in mean PSNR over the sites, the mean over the seeds "
        "both have ± its 95 % Student-t interval and the paired t-test over seeds. Not part of the paper's "
        "claims, so not in the corrections above.\n\n"
        + markdown(["control", "first", "second", "first − second", "verdict"], body)
    )


def controls_summary(spec: RegimeMap, results: list[SeedComparison | None]) -> list[dict]:
    """``map.json``'s ``controls``: each control's sides and numbers."""
    return [
        {**control.model_dump(), "result": numbers(result, control_verdict(result))}
        for control, result in zip(spec.controls, results)
    ]
