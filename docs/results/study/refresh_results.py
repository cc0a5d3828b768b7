"""Copy the study's generated tables into RESULTS.md, between its ``<!-- study:NAME -->`` and
``<!-- /study:NAME -->`` markers; the prose around them is written by hand.

    python compare.py --report docs/results/study && python docs/results/study/refresh_results.py
"""

from __future__ import annotations

import re
from pathlib import Path

STUDY = Path(__file__).resolve().parent
RESULTS = STUDY.parents[2] / "RESULTS.md"


def section(markdown: str, title: str) -> str:
    """The ``## title...`` section of ``markdown``, one heading level down."""
    for part in re.split(r"(?m)^## ", markdown):
        if part.startswith(title):
            return ("### " + part).rstrip() + "\n"
    return ""


def blocks() -> dict[str, str]:
    """Every generated block, by marker name."""
    md = (STUDY / "comparison.md").read_text()
    claims = (STUDY / "claims.md").read_text()
    missing = re.search(r"(?m)^Not finished yet.*$", md)
    return {
        "claims": claims.split("\n", 1)[1].strip() + "\n",
        "status": (
            f"**Still running.** {missing.group(0)} `docs/results/study/run.sh` continues with them.\n"
            if missing
            else "All runs of the study are finished.\n"
        ),
        "psnr": section(md, "PSNR (dB)\n"),
        "paired": section(md, "PSNR (dB): each method"),
        "compute": section(md, "Compute, traffic"),
        "ablations": "\n".join(
            section(md, f"Ablation: {name}") for name in ("contrastive", "sharing", "clipped")
        ),
    }


def main() -> None:
    text = RESULTS.read_text()
    for name, body in blocks().items():
        start, end = f"<!-- study:{name} -->", f"<!-- /study:{name} -->"
        if start not in text or end not in text:
            raise SystemExit(f"RESULTS.md: no {start} ... {end} markers")
        head, rest = text.split(start, 1)
        text = head + start + "\n\n" + body.strip() + "\n\n" + end + rest.split(end, 1)[1]
    RESULTS.write_text(text)
    print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
