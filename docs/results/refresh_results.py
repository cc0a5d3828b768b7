"""Copy a study's generated tables and short summary, or the regime map's tables and sentences, into
RESULTS.md and the README (a block goes wherever its markers are: the map's and the study's short
summaries, ``headline``, are in both), between their ``<!-- FOLDER:NAME -->`` and
``<!-- /FOLDER:NAME -->`` markers (FOLDER: the folder's name); the prose around them is written by hand.

    python compare.py --report docs/results/study
    python docs/results/refresh_results.py docs/results/study      # or docs/results/study_30rounds
    python compare.py --map docs/results/map
    python docs/results/refresh_results.py docs/results/map        # the map: table, summaries, controls
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGETS = (ROOT / "RESULTS.md", ROOT / "README.md")  # a block goes wherever its markers are


def section(markdown: str, title: str) -> str:
    """The ``## title...`` section of ``markdown``, one heading level down."""
    for part in re.split(r"(?m)^## ", markdown):
        if part.startswith(title):
            return ("### " + part).rstrip() + "\n"
    return ""


def blocks(study: Path) -> dict[str, str]:
    """Every generated block of the study in ``study``, by marker name: ``headline`` is ``claims.md``'s
    section "In short", ``claims`` the rest of it after its title."""
    md = (study / "comparison.md").read_text()
    claims_file = study / "claims.md"  # written once FedMRI, the reference of every claim, has a run
    claims = claims_file.read_text() if claims_file.is_file() else "\nNo run of FedMRI has finished yet.\n"
    table, _, short = claims.split("\n", 1)[1].partition("\n## In short\n")  # the title left out
    missing = re.search(r"(?m)^Not finished yet.*$", md)
    return {
        "claims": table.strip() + "\n",
        "headline": (short.strip() or "No run of FedMRI has finished yet.") + "\n",
        "status": (
            f"**Not finished yet** {missing.group(0).removeprefix('Not finished yet ')} "
            f"`docs/results/{study.name}/run.sh` trains them.\n"
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


def map_blocks(folder: Path) -> dict[str, str]:
    """The regime map's claims x regimes table (``map.md``'s first table), its summaries in sentences, its
    regimes list, its sections on the many verdicts at once, on the controls across columns and on the
    contrastive term (one heading level down)."""
    md = (folder / "map.md").read_text()
    table = "\n".join(line for line in md.split("\n## ", 1)[0].splitlines() if line.startswith("|"))
    parts = {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in md.split("\n## ")[1:]}
    term = parts.get("The contrastive term in each regime", "").strip()
    return {
        "table": table + "\n",
        "headline": parts.get("In short", "").strip() + "\n",
        "findings": parts.get("What the map says", "").strip() + "\n",
        "regimes": parts.get("The regimes", "").strip() + "\n",
        "multiplicity": parts.get("Many verdicts at once", "").strip() + "\n",
        "controls": parts.get("Across columns", "").strip() + "\n",
        "term": term.replace("\n## ", "\n### ") + "\n",
    }


def main(argv: list[str]) -> None:
    folder = Path(argv[0]) if len(argv) == 1 else None
    if folder is not None and (folder / "map.md").is_file():
        found = map_blocks(folder.resolve())
    elif folder is not None and (folder / "comparison.md").is_file():
        found = blocks(folder.resolve())
    else:
        raise SystemExit(
            "usage: refresh_results.py FOLDER (a study folder with comparison.md and claims.md, or the "
            "regime map's folder with map.md)"
        )
    study = folder.resolve()
    texts = {path: path.read_text() for path in TARGETS}
    for name, body in found.items():
        start, end = f"<!-- {study.name}:{name} -->", f"<!-- /{study.name}:{name} -->"
        holders = [path for path, text in texts.items() if start in text and end in text]
        if not holders:
            raise SystemExit(f"{' and '.join(p.name for p in TARGETS)}: no {start} ... {end} markers")
        for path in holders:
            head, rest = texts[path].split(start, 1)
            texts[path] = head + start + "\n\n" + body.strip() + "\n\n" + end + rest.split(end, 1)[1]
    for path, text in texts.items():
        if text != path.read_text():
            replace(path, text)
            print(f"updated {path}")


def replace(path: Path, text: str) -> None:
    """Write ``text`` beside ``path``, then move it in place at once: a reader (a commit made by another
    process) sees the old file or the new one, never half of it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
