"""Simulation of a multi-contrast brain MRI site: anatomy from the ICBM152 2009a template (Fonov et al.,
NeuroImage 2011), imaged by a spin-echo signal model under one of four site profiles modelled on the
clients of FedMRI (C.-M. Feng et al., IEEE TMI 2022).

``profiles`` holds the presets and tissue tables, ``anatomy`` a subject's tissue fractions and
``imaging`` its images; :func:`simulate_subject` is the entry point.
"""

from data.simulation.imaging import SimulatedSubject, simulate_subject
from data.simulation.profiles import GENERATOR_VERSION, PROFILES, TISSUES, Contrast, Profile, ProfileName

__all__ = [
    "GENERATOR_VERSION",
    "PROFILES",
    "TISSUES",
    "Contrast",
    "Profile",
    "ProfileName",
    "SimulatedSubject",
    "simulate_subject",
]
