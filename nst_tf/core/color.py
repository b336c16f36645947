"""Colour control (Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer").

Two ways to keep the content photo's colours:
- luminance transfer: the result's luminance with the content's chroma, in YUV, YCbCr or
  CIELAB, applied to the finished image;
- colour histogram matching: the style images are given the content's colour mean and
  covariance before optimising, so the style loss itself asks for the content's palette.
All in float64 numpy on images in 0..255.
"""

from __future__ import annotations

import numpy as np

# The colour spaces luminance-only transfer can use (the settings offer these).
COLOR_SPACES = ("yuv", "ycbcr", "lab")

# BT.601 analogue YUV and the JPEG (full-range) YCbCr, on values in 0..1.
_YUV = np.array([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])
_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
# sRGB (linear) to CIE XYZ, D65 white.
_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_WHITE = _XYZ.sum(axis=1)


def _srgb_to_linear(c):
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c):
    c = np.clip(c, 0, None)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def _f(t):
    delta = 6 / 29
    return np.where(t > delta**3, np.cbrt(t), t / (3 * delta**2) + 4 / 29)


def _f_inv(t):
    delta = 6 / 29
    return np.where(t > delta, t**3, 3 * delta**2 * (t - 4 / 29))


def to_space(rgb: np.ndarray, space: str) -> np.ndarray:
    """RGB in 0..255 -> (luma, chroma1, chroma2) in the named space."""
    x = np.asarray(rgb, np.float64) / 255.0
    if space == "yuv":
        return x @ _YUV.T
    if space == "ycbcr":
        return x @ _YCBCR.T
    if space == "lab":
        xyz = (_srgb_to_linear(x) @ _XYZ.T) / _WHITE
        fx, fy, fz = _f(xyz[..., 0]), _f(xyz[..., 1]), _f(xyz[..., 2])
        return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)
    raise ValueError(f"unknown colour space {space!r}; choose {', '.join(COLOR_SPACES)}")


def from_space(values: np.ndarray, space: str) -> np.ndarray:
    """Inverse of to_space, back to RGB in 0..255 (not clipped)."""
    if space == "yuv":
        x = values @ np.linalg.inv(_YUV).T
    elif space == "ycbcr":
        x = values @ np.linalg.inv(_YCBCR).T
    elif space == "lab":
        fy = (values[..., 0] + 16) / 116
        fx, fz = fy + values[..., 1] / 500, fy - values[..., 2] / 200
        xyz = np.stack([_f_inv(fx), _f_inv(fy), _f_inv(fz)], axis=-1) * _WHITE
        x = _linear_to_srgb(xyz @ np.linalg.inv(_XYZ).T)
    else:
        raise ValueError(f"unknown colour space {space!r}; choose {', '.join(COLOR_SPACES)}")
    return x * 255.0


def preserve_luminance(
    generated: np.ndarray, content: np.ndarray, space: str = "yuv"
) -> np.ndarray:
    """The generated image's luminance with the content's chroma, clipped to 0..255.

    Args:
        generated: [..., H, W, 3] RGB in 0..255.
        content: Same shape, RGB in 0..255.
        space: "yuv", "ycbcr" or "lab".
    """
    g, c = to_space(generated, space), to_space(content, space)
    combined = np.concatenate([g[..., :1], c[..., 1:]], axis=-1)
    return np.clip(from_space(combined, space), 0, 255).astype(np.float32)


def _sqrtm(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    values = np.clip(values, 1e-8, None)
    return (vectors * (values ** (-0.5 if inverse else 0.5))) @ vectors.T


def match_color(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Gives `style` the colour mean and covariance of `content` (a linear map per pixel).

    x' = C_c^(1/2) C_s^(-1/2) (x - mu_s) + mu_c, clipped to 0..255.
    """
    s = np.asarray(style, np.float64).reshape(-1, 3)
    c = np.asarray(content, np.float64).reshape(-1, 3)
    mu_s, mu_c = s.mean(axis=0), c.mean(axis=0)
    cov_s, cov_c = np.cov(s, rowvar=False), np.cov(c, rowvar=False)
    transform = _sqrtm(cov_c) @ _sqrtm(cov_s, inverse=True)
    matched = (s - mu_s) @ transform.T + mu_c
    return np.clip(matched, 0, 255).reshape(np.shape(style)).astype(np.float32)
