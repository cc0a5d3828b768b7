"""Subject splits: fractions keyed on subject ids, split files, and their one-line errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from data.sources.splits import SplitFiles, SplitFractions, assign_splits, fraction_split
from utils.errors import UserError

SUBJECTS = [f"subject-{i:02d}" for i in range(20)]


def test_fraction_split_counts_and_disjointness():
    assignment = fraction_split(SUBJECTS, SplitFractions(train=0.8, val=0.1, test=0.1))
    assert sorted(assignment) == SUBJECTS
    counts = {s: list(assignment.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 16, "val": 2, "test": 2}


def test_fraction_split_depends_on_ids_only():
    fractions = SplitFractions(train=0.6, val=0.2, test=0.2)
    forward = fraction_split(SUBJECTS, fractions)
    assert fraction_split(list(reversed(SUBJECTS)), fractions) == forward
    assert fraction_split(SUBJECTS + SUBJECTS[:3], fractions) == forward
    other = fraction_split([s + "x" for s in SUBJECTS], fractions)
    assert [other[s + "x"] for s in SUBJECTS] != [forward[s] for s in SUBJECTS]  # a hash, not list order


def test_every_split_gets_a_subject_when_there_are_enough():
    for count in (3, 4, 5):
        assignment = fraction_split(SUBJECTS[:count], SplitFractions())
        assert set(assignment.values()) == {"train", "val", "test"}
    assert set(fraction_split(SUBJECTS[:2], SplitFractions()).values()) == {"train", "val"}
    no_test = fraction_split(SUBJECTS, SplitFractions(train=0.9, val=0.1, test=0.0))
    assert "test" not in no_test.values()


@pytest.mark.parametrize(
    "values", [{"train": 0.5, "val": 0.1, "test": 0.1}, {"train": 0.5, "val": 0.6, "test": -0.1}]
)
def test_bad_fractions_are_refused(values):
    with pytest.raises(ValidationError):
        SplitFractions(**values)


def test_split_files_by_id_or_alias(tmp_path):
    (tmp_path / "train.txt").write_text("# training subjects\nsubject-00\nfile_b.h5\n\n")
    (tmp_path / "val.txt").write_text("subject-02  # a comment\nunknown-subject\n")
    files = SplitFiles(train=str(tmp_path / "train.txt"), val=str(tmp_path / "val.txt"))
    aliases = {"subject-00": ["file_a.h5"], "subject-01": ["file_b.h5"], "subject-02": [], "subject-03": []}
    assignment = assign_splits(aliases, SplitFractions(), files)
    assert assignment == {"subject-00": "train", "subject-01": "train", "subject-02": "val"}


def test_a_subject_in_two_split_files_is_an_error(tmp_path):
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "val.txt").write_text("b\n")
    files = SplitFiles(train=str(tmp_path / "train.txt"), val=str(tmp_path / "val.txt"))
    with pytest.raises(UserError, match="'b'.*train.txt.*val.txt") as info:
        assign_splits({"a": [], "b": []}, SplitFractions(), files)
    assert "\n" not in str(info.value)


def test_a_missing_split_file_names_its_key(tmp_path):
    files = SplitFiles(train=str(tmp_path / "nope.txt"), val=str(tmp_path / "nope.txt"))
    with pytest.raises(UserError, match=r"split_files.train: split file .*nope.txt: not found"):
        assign_splits({"a": []}, SplitFractions(), files)
