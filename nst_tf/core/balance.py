"""The --style_strength dial: a style weight calibrated from the terms' magnitudes.

The raw style term differs by orders of magnitude between style images (a flat painting
against a busy one), between the Gram and the Wasserstein losses (about 1e5) and with the
layers and the size, so one --style_weight gives a different look for each. The dial
instead fixes the ratio of two magnitudes measured once, on the content photo at the first
scale of the run:

- the style gap S: the style term of the content photo itself (how far the photo is
  from the style), and
- the content scale M: the content term of an image with no features at all (the mean
  square of the content layers' activations, in the same normalisation).

The style weight is chosen so that weight * S / (content_weight * M) equals
strength * REFERENCE_BALANCE. In a quadratic model of the two terms (each the squared
distance to its own optimum) the optimum then closes the same fraction of the style gap
whatever S is; scripts/benchmark_strength.py measures how far that holds (docs/strength.md).
The formula is plain arithmetic on two floats, so that it is tested against numpy.
"""

from __future__ import annotations

import math

# weight * S / M of the default --style_weight=1e-3 on the reference pair: Gatys et al.'s
# Tübingen photo and The Starry Night, default settings (Gram loss, first scale 256 px):
# S = 1.329e10, M = 3.827e5, so 1e-3 * S / M = 34.7 (scripts/benchmark_strength.py
# --reference prints it). Strength 1 is that balance for every pair.
REFERENCE_BALANCE = 34.7


def calibrated_style_weight(
    strength: float, content_weight: float, style_gap: float, content_scale: float
) -> float:
    """The style weight that gives `strength` times the reference balance.

    Args:
        strength: The dial: 0 is the photo, 1 the reference balance, above 1 stronger.
        content_weight: The content term's weight (the ratio is what is calibrated).
        style_gap: S, the style term of the content photo (>= 0).
        content_scale: M, the content term of a featureless image (>= 0).

    Returns:
        The style weight (0 for strength 0, or when the photo already has the style or
        the magnitudes are not finite).
    """
    if strength == 0 or not (style_gap > 0 and math.isfinite(style_gap)):
        return 0.0
    if not math.isfinite(content_scale):
        return 0.0
    return strength * REFERENCE_BALANCE * content_weight * content_scale / style_gap
