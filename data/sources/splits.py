"""Train/val/test splits by subject: from split files, or a deterministic fraction split keyed on subject ids.

A subject's volumes (every contrast, every slice) always land in the same split. The fraction split orders
subjects by a hash of their id (not of the run seed, so every run of a dataset tests on the same
subjects) and cuts that order at the requested fractions; split files list the subjects of each split.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from data.sources.base import SPLITS, Split
from utils.errors import UserError
from utils.io import MiB, read_text
from utils.paths import not_found
from utils.seeding import stable_seed

logger = logging.getLogger(__name__)


class SplitFractions(BaseModel):
    """Fractions of the subjects in each split; they must add up to 1.

    ``{train: 0, val: 0, test: 1}`` describes a test-only data set: ``evaluate.py --config`` tests on it,
    ``train.py`` refuses it (a site needs training and validation subjects).
    """

    model_config = ConfigDict(extra="forbid")

    train: float = Field(0.8, ge=0.0, le=1.0, description="fraction of subjects for training")
    val: float = Field(0.1, ge=0.0, le=1.0, description="fraction of subjects for validation")
    test: float = Field(0.1, ge=0.0, le=1.0, description="fraction of subjects for testing")

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions must add up to 1 (got {total:g})")
        return self


class SplitFiles(BaseModel):
    """Text files listing the subjects of each split, one id (or file name) per line; '#' starts a comment.

    A split without a file gets no subjects: only ``test`` describes a test-only data set.
    """

    model_config = ConfigDict(extra="forbid")

    train: str | None = Field(None, description="subjects for training; null = none (a test-only data set)")
    val: str | None = Field(None, description="subjects for validation; null = none")
    test: str | None = Field(None, description="subjects for testing; null = no test split")


def fraction_split(subjects: Iterable[str], fractions: SplitFractions) -> dict[str, Split]:
    """Assign subjects to splits: order by a hash of the id, cut at the fractions (largest remainders).

    Every split with a positive fraction gets at least one subject when there are enough subjects.
    """
    order = sorted(set(subjects), key=lambda s: (stable_seed("subject-split", s), s))
    total = len(order)
    wanted = {split: getattr(fractions, split) * total for split in SPLITS}
    counts = {split: math.floor(wanted[split]) for split in SPLITS}
    by_remainder = sorted(SPLITS, key=lambda s: (counts[s] - wanted[s], SPLITS.index(s)))
    for split in by_remainder[: total - sum(counts.values())]:
        counts[split] += 1
    for split in SPLITS:
        if getattr(fractions, split) > 0 and counts[split] == 0:
            donor = max(SPLITS, key=lambda s: counts[s])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[split] += 1
    assignment: dict[str, Split] = {}
    start = 0
    for split in SPLITS:
        for subject in order[start : start + counts[split]]:
            assignment[subject] = split
        start += counts[split]
    return assignment


def _read_list(path: Path, key: str) -> list[str]:
    """Non-empty, non-comment lines of a split file."""
    if not path.exists():
        raise UserError(f"{key}: split file {path}: {not_found(path)}")
    text = read_text(path, f"{key}: split file", 64 * MiB, line_limit=16 * 1024)
    entries = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [entry for entry in entries if entry]


def file_split(aliases: Mapping[str, Iterable[str]], files: SplitFiles) -> dict[str, Split]:
    """Assign subjects to the split whose file lists their id or one of their aliases (file names).

    Subjects listed in no file are left out; a subject listed in two split files is an error.
    """
    lookup: dict[str, str] = {}
    for subject, names in aliases.items():
        lookup[subject] = subject
        for name in names:
            lookup.setdefault(name, subject)
    assignment: dict[str, Split] = {}
    source_of: dict[str, Path] = {}
    unmatched = 0
    for split in SPLITS:
        if getattr(files, split) is None:
            continue
        path = Path(getattr(files, split)).expanduser()
        for entry in _read_list(path, f"split_files.{split}"):
            subject = lookup.get(entry)
            if subject is None:
                unmatched += 1
                continue
            if assignment.get(subject, split) != split:
                raise UserError(
                    f"split_files: subject {subject!r} is listed in both {source_of[subject]} and {path}; "
                    "expected every subject in one split only"
                )
            assignment[subject] = split
            source_of[subject] = path
    if unmatched:
        logger.info("split files: %d listed ids match no volume found (filtered out or absent)", unmatched)
    return assignment


def assign_splits(
    aliases: Mapping[str, Iterable[str]], fractions: SplitFractions, files: SplitFiles | None
) -> dict[str, Split]:
    """Subject -> split, from ``files`` if given, else from ``fractions``; subjects absent are left out."""
    if files is not None:
        return file_split(aliases, files)
    return fraction_split(aliases.keys(), fractions)
