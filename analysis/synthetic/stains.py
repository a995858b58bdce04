"""Beer-Lambert stain models of the two domains: in-domain and shifted (another lab and scanner)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.synthetic.spec import F32, Domain


@dataclass(frozen=True)
class StainModel:
    """Beer-Lambert colour model: RGB = white * exp(-(h * H + e * E)), optical densities natural-log."""

    h_vec: tuple[float, float, float]
    e_vec: tuple[float, float, float]
    h_scale: float
    e_scale: float
    white: tuple[float, float, float]
    noise_sigma: float
    blur_passes: int  # passes of a [1, 2, 1] / 4 blur: Gaussian sigma = sqrt(passes / 2) px
    saturation: float
    gamma: float


IN_DOMAIN = StainModel(
    h_vec=(0.5626, 0.7201, 0.4062),  # Macenko et al. reference H&E vectors
    e_vec=(0.2159, 0.8012, 0.5581),
    h_scale=1.0,
    e_scale=1.0,
    white=(243.0, 241.0, 245.0),
    noise_sigma=1.6,
    blur_passes=0,
    saturation=1.0,
    gamma=1.0,
)

SHIFTED = StainModel(
    h_vec=(0.76, 0.62, 0.20),  # bluer haematoxylin
    e_vec=(0.05, 0.88, 0.47),  # redder, more magenta eosin
    h_scale=1.3,  # a darker haematoxylin ...
    e_scale=0.72,  # ... and a paler eosin than in-domain
    white=(232.0, 224.0, 202.0),  # warmer, dimmer illumination
    noise_sigma=4.5,
    blur_passes=4,  # a softer optical path
    saturation=0.7,
    gamma=1.2,
)


def unit_vector(v: tuple[float, float, float]) -> F32:
    a = np.asarray(v, dtype=np.float32)
    return (a / np.linalg.norm(a)).astype(np.float32)


#: The stain model of each domain.
STAIN_MODELS: dict[Domain, StainModel] = {"in-domain": IN_DOMAIN, "shifted": SHIFTED}
