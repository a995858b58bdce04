"""Array helpers of the generator: smooth steps, filtered noise, a separable blur."""

from __future__ import annotations

import math

import numpy as np

from analysis.synthetic.spec import F32


def smoothstep(edge0: float, edge1: float, x: F32) -> F32:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (edges may be reversed)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> F32:
    """Gaussian-filtered white noise, zero mean and unit standard deviation, shape ``shape``.

    Filtered in the Fourier domain (cost independent of ``sigma``); it wraps around the edges.
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2.0 * (math.pi * max(sigma, 0.3)) ** 2 * (ky**2 + kx**2))
    a = np.fft.irfft2(np.fft.rfft2(white) * gain, s=shape)
    a -= a.mean()
    return (a / (a.std() + 1e-8)).astype(np.float32)


def periodic_noise(rng: np.random.Generator, n: int, sigma: float) -> F32:
    """Periodic (tileable) Gaussian-filtered noise, (n, n), zero mean and unit std."""
    white = rng.standard_normal((n, n))
    k = np.fft.fftfreq(n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    spec = np.fft.fft2(white) * np.exp(-2.0 * (math.pi * sigma) ** 2 * k2)
    a = np.fft.ifft2(spec).real
    a -= a.mean()
    return (a / (a.std() + 1e-12)).astype(np.float32)



def binomial_blur(a: F32, passes: int) -> F32:
    """Separable [1, 2, 1] / 4 blur applied ``passes`` times (Gaussian sigma ~ sqrt(passes / 2) px).

    The outermost row and column on each side keep their values.  (h, w) -> (h, w).
    """
    out = a.copy()
    tmp = np.empty_like(a)
    for _ in range(passes):
        tmp[:] = out
        out[1:-1] = tmp[1:-1] * 0.5
        out[1:-1] += tmp[:-2] * 0.25
        out[1:-1] += tmp[2:] * 0.25
        tmp[:] = out
        out[:, 1:-1] = tmp[:, 1:-1] * 0.5
        out[:, 1:-1] += tmp[:, :-2] * 0.25
        out[:, 1:-1] += tmp[:, 2:] * 0.25
    return out

