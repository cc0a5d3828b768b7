"""The tables of the transfer check (bench/realism.py): mean gains over zero-filled with their
intervals, and the distribution over the real volumes, one volume at a time.

The reported metric is fastMRI's: whole-image SSIM, the mean over slices of skimage's SSIM with the
volume's maximum as data range. Beside it, as a diagnostic only, the same SSIM map is averaged inside
the head and in the background separately (:func:`region_ssim`), so that a loss can be placed: a
model that sharpens the head but paints structure into an empty background loses whole-image SSIM on
a wide field of view while it gains inside the head.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PAD = 3  # skimage's SSIM averages its map without a border of (win_size - 1) // 2 = 3 pixels


def gains(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per site: its own model's PSNR and SSIM minus the zero-filled input's on the same test data, and,
    where the per-volume scores are there, the 95 % Student-t half-width of that gain over the test
    volumes (None with one volume) and their number."""
    from utils.stats import mean_interval

    out = {}
    for site in results["test_sites"]:
        model, zf = results["cross_site"][site][site], results["zero_filled"][site]
        out[site] = {f"{k}_gain": model[k] - zf[k] for k in ("psnr", "ssim")} | {
            f"{k}_zero_filled": zf[k] for k in ("psnr", "ssim")
        }
        volumes = (results.get("own_volumes") or {}).get(site)
        if volumes:
            out[site]["volumes"] = len(volumes)
            for k in ("psnr", "ssim"):
                differences = [v["model"][k] - v["zero_filled"][k] for v in volumes.values()]
                half = mean_interval(differences).half_width
                out[site][f"{k}_gain_ci"] = None if np.isnan(half) else half
    return out


def verdict(gain: dict[str, Any]) -> str:
    """Whether a site's model beats zero-filled in both PSNR and SSIM: "yes" / "**no**" when both
    intervals (or, without them, both means) are on one side of zero, "not detectable" when an interval
    holds zero."""
    bounds = []
    for k in ("psnr", "ssim"):
        mean, half = gain[f"{k}_gain"], gain.get(f"{k}_gain_ci")
        bounds.append((mean - half, mean + half) if half is not None else (mean, mean))
    if all(low > 0 for low, _ in bounds):
        return "yes"
    if any(high < 0 for _, high in bounds):
        return "**no**"
    return "not detectable"


def _gain_cell(gain: dict[str, Any]) -> str:
    parts = []
    for k, unit, digits in (("psnr", " dB", 2), ("ssim", "", 3)):
        half = gain.get(f"{k}_gain_ci")
        interval = f" ± {half:.{digits}f}" if half is not None else ""
        parts.append(f"{gain[f'{k}_gain']:+.{digits}f}{interval}{unit}")
    count = f" ({gain['volumes']} vol.)" if "volumes" in gain else ""
    return " / ".join(parts) + count


def table(simulated: dict, real: dict) -> str:
    """Markdown: per site, the gains on the simulated test split and on the real volumes side by side,
    each ± its 95 % interval over the test volumes."""
    from utils.tables import markdown

    rows = [
        [site, _gain_cell(simulated[site]), _gain_cell(real[site]), verdict(real[site])]
        for site in simulated
        if site in real
    ]
    header = [
        "site",
        "simulated test: PSNR / SSIM gain",
        "real volumes: PSNR / SSIM gain",
        "beats zero-filled on the real volumes",
    ]
    return markdown(header, rows)


# -- head and background -------------------------------------------------------------------------------
def head_mask(target: np.ndarray, fraction: float = 0.1, ring: int = 6) -> np.ndarray:
    """Where the head (or, skull-stripped, the brain) is in each slice of a (S, H, W) target volume:
    the target smoothed over 1.5 pixels above a level, opened to drop specks of background noise, the
    largest region of each slice kept and its holes (dark CSF, ventricles) filled. The level is
    ``fraction`` of the volume's 99th percentile, or twice the smoothed background's median in a ring
    of ``ring`` pixels along the border where that is higher (a noisy diffusion-weighted image, whose
    background is a tenth of its brightest tissue or more)."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(target.astype(np.float64), sigma=(0, 1.5, 1.5))
    border = np.ones(target.shape[1:], dtype=bool)
    border[ring:-ring, ring:-ring] = False
    level = max(fraction * float(np.percentile(target, 99)), 2.0 * float(np.median(smooth[:, border])))
    mask = np.zeros(target.shape, dtype=bool)
    for i, image in enumerate(smooth):
        above = ndimage.binary_opening(image > level, iterations=1)
        labels, count = ndimage.label(above)
        if count:
            sizes = ndimage.sum(above, labels, range(1, count + 1))
            mask[i] = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    return mask


def region_ssim(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> dict[str, float | None]:
    """Whole-image SSIM as fastMRI reports it (mean over slices, data range = the volume's maximum)
    and the same SSIM map averaged over every head pixel and every background pixel of the volume
    (pooled over slices; None where a region has no pixel). Pixels within :data:`PAD` of the border
    are left out of both, as skimage leaves them out of its mean."""
    from skimage.metrics import structural_similarity

    maxval = float(gt.max())
    sums = {"head": [0.0, 0], "background": [0.0, 0]}
    whole = []
    for g, p, m in zip(gt, pred, mask):
        mean, ssim_map = structural_similarity(g, p, data_range=maxval, full=True)
        whole.append(float(mean))
        inner, head = ssim_map[PAD:-PAD, PAD:-PAD], m[PAD:-PAD, PAD:-PAD]
        for region, where in (("head", head), ("background", ~head)):
            sums[region][0] += float(inner[where].sum())
            sums[region][1] += int(where.sum())
    out: dict[str, float | None] = {"ssim": float(np.mean(whole))}
    for region, (total, count) in sums.items():
        out[f"ssim_{region}"] = total / count if count else None
    out["head_fraction"] = sums["head"][1] / max(sums["head"][1] + sums["background"][1], 1)
    return out


def volume_record(name: str, scores: dict[str, dict[str, float]], images: tuple) -> dict[str, Any]:
    """One real volume under one site's model: whole-image PSNR and SSIM of the model and of the
    zero-filled input (``scores``, as evaluate.py computed them), and the head / background SSIM of
    both from the volume's (pred, target, zero-filled) ``images``."""
    pred, target, zero_filled = images
    mask = head_mask(target)
    record: dict[str, Any] = {"volume": name}
    for which, image in (("model", pred), ("zero_filled", zero_filled)):
        regions = region_ssim(target, image, mask)
        record[which] = {"psnr": scores[which]["psnr"], "ssim": scores[which]["ssim"]} | {
            k: regions[k] for k in ("ssim_head", "ssim_background")
        }
        record["head_fraction"] = regions["head_fraction"]
    return record


def distribution(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How one site's model fares over the real volumes: on how many it beats zero-filled in PSNR and
    in SSIM (strictly; a tie does not count), and the volume with the lowest gain in each."""
    out: dict[str, Any] = {"volumes": len(records)}
    for metric in ("psnr", "ssim"):
        gain = {r["volume"]: r["model"][metric] - r["zero_filled"][metric] for r in records}
        out[f"{metric}_wins"] = sum(g > 0 for g in gain.values())
        worst = min(gain, key=lambda name: (gain[name], name)) if gain else None
        out[f"{metric}_worst"] = {"volume": worst, "gain": gain[worst]} if worst is not None else None
    return out


def _signed(value: float | None, digits: int, unit: str = "") -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.{digits}f}{unit}"


def distribution_table(by_site: dict[str, list[dict[str, Any]]], labels: dict[str, str]) -> str:
    """Markdown, one row per site: wins in PSNR and SSIM out of the volumes, and the worst volume of
    each (``labels`` marks a volume that is not a single subject's scan)."""
    from utils.tables import markdown

    rows = []
    for site, records in by_site.items():
        d = distribution(records)
        cells = [site]
        for metric, digits, unit in (("psnr", 2, " dB"), ("ssim", 3, "")):
            cells.append(f"{d[f'{metric}_wins']} / {d['volumes']}")
            worst = d[f"{metric}_worst"]
            cells.append(
                f"{worst['volume']}{labels.get(worst['volume'], '')} ({_signed(worst['gain'], digits, unit)})"
                if worst else "–"
            )  # fmt: skip
        rows.append(cells)
    header = ["site", "beats zero-filled in PSNR", "worst PSNR gain", "beats zero-filled in SSIM",
              "worst SSIM gain"]  # fmt: skip
    return markdown(header, rows)


def _pair(zf: float | None, model: float | None, digits: int) -> str:
    if zf is None or model is None:
        return "–"
    return f"{zf:.{digits}f} → {model:.{digits}f} ({model - zf:+.{digits}f})"


def volumes_table(by_site: dict[str, list[dict[str, Any]]], labels: dict[str, str]) -> str:
    """Markdown, one row per site and real volume: zero-filled → model in PSNR and whole-image SSIM
    (the reported metrics), then SSIM inside the head and in the background (the diagnostic)."""
    from utils.tables import markdown

    rows = []
    for site, records in by_site.items():
        for r in records:
            zf, model = r["zero_filled"], r["model"]
            rows.append(
                [site, f"{r['volume']}{labels.get(r['volume'], '')}", f"{100 * r['head_fraction']:.0f} %"]
                + [_pair(zf[k], model[k], d) for k, d in
                   (("psnr", 2), ("ssim", 3), ("ssim_head", 3), ("ssim_background", 3))]
            )  # fmt: skip
    header = ["site", "volume", "head", "PSNR (dB)", "SSIM (whole image)", "SSIM in the head",
              "SSIM in the background"]  # fmt: skip
    return markdown(header, rows, align="llrrrrr")
