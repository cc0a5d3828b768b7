"""Tests of assembly/."""
