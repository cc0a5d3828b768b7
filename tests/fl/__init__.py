"""Tests of fl/."""
