"""A simulated subject's images: tissue relaxation, spin-echo contrast and the site's scanner.

The anatomy's tissue fractions are imaged by a spin-echo signal model ``S = PD (1 - exp(-TR/T1))
exp(-TE/T2)`` for T1- and T2-weighted contrasts, with the subject's own tissue T1/T2/PD. The site's
profile then adds its scanner's fingerprint: coil bias field, blur, Rician noise, intensity curve and
scale, and a zero background when skull-stripped or served as an 8-bit export (ours).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from data.simulation.anatomy import VARIED_HEAD_SCALE, site_maps, tissue_fractions
from data.simulation.profiles import GENERATOR_VERSION, PROFILES, TISSUES, Contrast, Profile, ProfileName
from data.simulation.template import smooth_noise
from utils.seeding import stable_seed


class SubjectOptions(Protocol):
    """What :func:`simulate_subject` reads of a site's options (the synthetic source's
    ``SyntheticOptions`` has them all; their meaning is documented there)."""

    @property
    def profile(self) -> ProfileName: ...
    @property
    def size(self) -> int: ...
    @property
    def slices_per_subject(self) -> int: ...
    @property
    def contrasts(self) -> Sequence[Contrast]: ...
    @property
    def planes(self) -> Sequence[str]: ...
    @property
    def lesions(self) -> bool | None: ...
    @property
    def realism(self) -> str: ...
    @property
    def noise_scale(self) -> float: ...
    @property
    def noise_range(self) -> tuple[float, float] | None: ...
    @property
    def stripped_fraction(self) -> float: ...
    @property
    def export_fraction(self) -> float: ...
    @property
    def folded_fraction(self) -> float: ...
    @property
    def receive_channels(self) -> tuple[int, int] | None: ...
    @property
    def head_scale(self) -> tuple[float, float] | None: ...
    @property
    def matrix_range(self) -> tuple[float, float] | None: ...


def tissue_parameters(rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    """One subject's (T1, T2, PD) per tissue inside the literature ranges.

    Each quantity's position in its range is mostly shared by all tissues (field strength, scanner), so
    a subject never gets, say, white matter's longest T1 with grey matter's shortest.
    """
    shared = rng.random(3)
    params = {}
    for name, ranges in TISSUES.items():
        position = 0.8 * shared + 0.2 * rng.random(3)
        params[name] = tuple(lo + (hi - lo) * q for (lo, hi), q in zip(ranges, position, strict=True))
    return params


def _spin_echo(pd: float, t1: float, t2: float, tr: float, te: float) -> float:
    """Spin-echo signal of one tissue."""
    return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)


def tissue_signal(
    fractions: dict[str, np.ndarray], params: dict[str, tuple[float, float, float]], tr: float, te: float
) -> np.ndarray:
    """Noise-free magnitude (S, N, N): the fraction-weighted spin-echo signal of every tissue."""
    out = np.zeros_like(next(iter(fractions.values())))
    for name, frac in fractions.items():
        t1, t2, pd = params[name]
        out += np.float32(_spin_echo(pd, t1, t2, tr, te)) * frac
    return out


def _texture(rng: np.random.Generator, shape: tuple[int, ...], strength: float = 0.04) -> np.ndarray:
    """Fine multiplicative tissue texture (S, N, N) around 1: the heterogeneity an average template lacks."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (0.5, 1.0, 1.0))
    return 1.0 + strength * field / (field.std() + 1e-6)


# realism: varied's range of the acquired k-space fraction (the option matrix_range: null)
VARIED_MATRIX = (0.7, 1.0)


def acquisition_matrix(image: np.ndarray, fraction: float) -> np.ndarray:
    """(..., H, W) image as a scanner reconstructs it from a smaller acquired matrix: k-space beyond
    ``fraction`` of the frequencies along each axis is zero (blur and Gibbs ringing at edges); real-valued
    (magnitude)."""

    def window(size: int) -> np.ndarray:
        keep = max(int(round(size * fraction / 2)), 1)
        return (np.abs(np.fft.fftfreq(size) * size) <= keep).astype(np.float32)

    kspace = np.fft.fft2(image) * window(image.shape[-2])[:, None] * window(image.shape[-1])[None, :]
    return np.abs(np.fft.ifft2(kspace)).astype(np.float32)


def background_phase(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A smooth image phase (H, W) in radians: B0 inhomogeneity, coil phase and an off-centre shift.

    A constant offset, a linear ramp of up to half a cycle across the field of view and a smooth random
    field of about 1 rad std: real k-space is not conjugate-symmetric, and this removes the symmetry a
    magnitude image's k-space has.
    """
    grid = np.indices(shape, dtype=np.float32)
    extent = np.array([shape[0] - 1, shape[1] - 1], dtype=np.float32)
    ramp = sum(rng.uniform(-np.pi, np.pi) * (g / e - 0.5) for g, e in zip(grid, extent, strict=True))
    field = rng.uniform(0.5, 1.5) * smooth_noise(rng, grid, extent, 4)
    return (rng.uniform(-np.pi, np.pi) + ramp + field).astype(np.float32)


def coil_sensitivities(rng: np.random.Generator, coils: int, shape: tuple[int, int]) -> np.ndarray:
    """Complex receive sensitivities (C, H, W) of a ring of ``coils`` around the head; their root sum
    of squares is 1 at every pixel, so the RSS of the coil images is the magnitude image."""
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape, dtype=np.float32) - 1) / 2.0
    radius = 0.6 * float(min(shape))
    maps = []
    start = rng.uniform(0.0, 2 * np.pi)
    for c in range(coils):
        angle = start + 2 * np.pi * c / coils
        position = centre + radius * np.array([np.sin(angle), np.cos(angle)], dtype=np.float32)
        distance2 = ((grid - position.reshape(2, 1, 1)) ** 2).sum(axis=0)
        width = rng.uniform(0.5, 0.7) * float(min(shape))
        phase = rng.uniform(-np.pi, np.pi) + 0.5 * smooth_noise(rng, grid, centre * 2, 3)
        maps.append(np.exp(-distance2 / (2 * width**2)) * np.exp(1j * phase))
    stack = np.stack(maps)
    return (stack / np.sqrt((np.abs(stack) ** 2).sum(axis=0, keepdims=True))).astype(np.complex64)


# ----------------------------------------------------------------------------- acquisition


def _bias_field(rng: np.random.Generator, profile: Profile, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth multiplicative coil/B1 field (S, N, N), geometric mean 1, in scanner coordinates."""
    grid = np.indices(shape, dtype=np.float32)
    # the field changes slowly along the slice axis: the whole stack spans a quarter of its grid
    extent = np.array([max(shape[0] - 1, 1) * 4.0, shape[1] - 1, shape[2] - 1], dtype=np.float32)
    log_field = profile.bias_std * smooth_noise(rng, grid, extent, 4)
    radius2 = ((grid[1] / (shape[1] - 1) - 0.5) ** 2 + (grid[2] / (shape[2] - 1) - 0.5) ** 2) * 4.0
    log_field += profile.bias_radial * radius2
    return np.exp(log_field - log_field.mean())


def _acquire(
    signal: np.ndarray,
    bias: np.ndarray,
    profile: Profile,
    noise_scale: float,
    rng: np.random.Generator,
    channels: int = 1,
) -> np.ndarray:
    """The site's image of a noise-free signal: bias, blur, noise, intensity curve, scale."""
    image = signal * bias
    if profile.blur_px > 0:
        image = ndimage.gaussian_filter(image, (0, profile.blur_px, profile.blur_px))
    reference = float(np.percentile(image, 99)) or 1.0
    sigma = profile.noise * noise_scale * reference
    if sigma > 0:
        image = magnitude_noise(image, sigma, channels, rng)
    image = reference * (np.maximum(image, 0.0) / reference) ** profile.gamma
    return (image * profile.scale).astype(np.float32)


def magnitude_noise(image: np.ndarray, sigma: float, channels: int, rng: np.random.Generator) -> np.ndarray:
    """The magnitude of ``image`` received with complex Gaussian noise of std ``sigma`` per channel and
    combined over ``channels`` receive channels by root sum of squares, each channel seeing the signal
    over sqrt(channels): Rician for one channel, noncentral chi with 2 x channels degrees of freedom for
    more. Inside the head the noise stays about ``sigma``; where there is no signal the image is the noise
    floor, of mean sigma x sqrt(2) x Gamma(channels + 1/2) / Gamma(channels) (1.25 sigma for one channel,
    3.94 sigma for eight): the floor of a multi-channel scanner's RSS image (Constantinides et al., MRM
    1997). The channels' sum of squares is drawn in a rotated basis where the signal lies on one axis:
    (signal + sigma z)^2 plus sigma^2 times a chi-square draw of 2 x channels - 1 degrees of freedom."""
    noise = rng.standard_normal((2, *image.shape), dtype=np.float32) * np.float32(sigma)
    if channels <= 1:
        return np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)
    rest = rng.chisquare(2 * channels - 1, size=image.shape).astype(np.float32) * np.float32(sigma**2)
    return np.sqrt((image + noise[0]) ** 2 + rest)


def _support(fractions: dict[str, np.ndarray]) -> np.ndarray:
    """Binary mask of the tissue simulated: the brain of a skull-stripped subject, the whole head of
    another; outside it an exported or skull-stripped image is exactly zero."""
    return (sum(fractions.values()) > 0.5).astype(np.float32)


@dataclass
class SimulatedSubject:
    """One subject's simulated slices: the images per contrast and the tissue fractions behind them."""

    images: dict[str, np.ndarray]  # contrast -> (S, N, N) float32 magnitude
    fractions: dict[str, np.ndarray]  # tissue -> (S, N, N) fraction


def simulate_subject(
    options: SubjectOptions, seed: int, site: str, subject: str, maps: dict[str, np.ndarray] | None = None
) -> SimulatedSubject:
    """Generate one subject of a site; deterministic in (options, seed, site, subject)."""
    profile = PROFILES[options.profile]
    planes = tuple(options.planes)
    maps = maps if maps is not None else site_maps(profile, options.size, planes)

    def rng(*purpose: str) -> np.random.Generator:
        return np.random.default_rng(stable_seed(GENERATOR_VERSION, seed, site, subject, *purpose))

    lesions = profile.lesions if options.lesions is None else options.lesions
    varied = rng("realism") if options.realism == "varied" else None
    stripped = profile.skull_stripped or bool(rng("stripped").random() < options.stripped_fraction)
    exported = options.export_fraction > 0 and bool(rng("export").random() < options.export_fraction)
    plane = planes[int(rng("plane").integers(len(planes)))]  # each subject's slices lie in one plane
    folded = options.folded_fraction > 0 and bool(rng("folded").random() < options.folded_fraction)
    fractions = tissue_fractions(
        profile,
        options.size,
        options.slices_per_subject,
        lesions,
        rng("anatomy"),
        rng("lesions"),
        maps,
        varied,
        stripped,
        plane,
        options.head_scale or VARIED_HEAD_SCALE,
        rng("folds") if folded else None,
    )
    params = tissue_parameters(rng("tissue"))
    bias = _bias_field(rng("bias"), profile, fractions["gm"].shape)
    noise_scale, matrix, channels = options.noise_scale, 1.0, 1
    if options.receive_channels is not None:  # one receive array per subject, for both its contrasts
        low, high = options.receive_channels
        channels = int(rng("receive channels").integers(low, high + 1))
    if varied is None:
        texture = _texture(rng("texture"), fractions["gm"].shape)
        if options.noise_range is not None:
            noise_scale *= _log_uniform(rng("noise level"), options.noise_range)
    else:  # each subject its own texture strength, noise level (default 0.5-2x), acquired matrix (70-100 %)
        texture = _texture(rng("texture"), fractions["gm"].shape, varied.uniform(0.04, 0.12))
        noise_scale *= _log_uniform(varied, options.noise_range or (0.5, 2.0))
        matrix = varied.uniform(*(options.matrix_range or VARIED_MATRIX))
    images = {}
    for contrast in options.contrasts:
        signal = tissue_signal(fractions, params, *profile.protocol[contrast]) * texture
        if matrix < 1.0:
            signal = acquisition_matrix(signal, matrix)
        image = _acquire(signal, bias, profile, noise_scale, rng("noise", contrast), channels)
        images[contrast] = image * _support(fractions) if stripped or exported else image
    if exported:
        images = {contrast: eight_bit(image) for contrast, image in images.items()}
    return SimulatedSubject(images=images, fractions=fractions)


def eight_bit(image: np.ndarray) -> np.ndarray:
    """``image`` as an 8-bit export stores it: rounded to 256 levels between 0 and its maximum."""
    top = float(image.max())
    if top <= 0:
        return image
    return (np.round(image * (255.0 / top)) * (top / 255.0)).astype(np.float32)


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A factor drawn log-uniformly in [low, high]."""
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))
