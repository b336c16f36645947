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

The start weight is chosen so that weight * S / (content_weight * M) equals
REFERENCE_BALANCE. That equal START balance still left the balance at the END of a run
(weighted content / weighted style) 5-9.5x apart over style images: a busy painting's large
S over-corrects. So the start weight is then corrected by a pilot (--style_strength_pilot,
on by default): PILOT_STEPS L-BFGS steps from the photo at the first scale with the start
weight, whose balance B predicts the end balance (the end balance / B stayed within 1.23x
over 4 styles and 2 sizes for each loss). The weight is scaled so that B would be the
reference pair's, REFERENCE_PILOT_BALANCE, by the loss's measured ELASTICITY (the end
balance goes about as weight ** -elasticity), and multiplied by the strength:

    weight = strength * start * (B / REFERENCE_PILOT_BALANCE) ** (1 / elasticity)

(A second pilot at the corrected weight and a secant step, tried, spread the end balances
no less: the ratio of the end balance to the pilot's is what varies, not the aim.)
scripts/benchmark_strength.py measures the spread of the end balance with and without the
pilot (docs/strength.md). The formulas are plain arithmetic on floats, so that they are
tested by hand and against numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# weight * S / M of the default --style_weight=1e-3 on the reference pair: Gatys et al.'s
# Tübingen photo and The Starry Night, default settings (Gram loss, first scale 256 px):
# S = 1.329e10, M = 3.827e5, so 1e-3 * S / M = 34.7 (scripts/benchmark_strength.py
# --reference prints it). Strength 1 is that balance for every pair.
REFERENCE_BALANCE = 34.7

# The pilot's balance (weighted content / weighted style after PILOT steps from the photo
# with the start weight) on the reference pair at the first scale of the default run
# (256 px, Gram loss): scripts/benchmark_strength.py --reference prints it.
REFERENCE_PILOT_BALANCE = 0.520
PILOT_STEPS = 10

# How the end balance of a short run answers the style weight: balance ~ weight ** -e, e
# from pairs of runs at two weights over 4 styles and 2 sizes (docs/strength.md).
ELASTICITY = {"gram": 0.75, "wasserstein": 0.95}


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


def corrected_weight(weight: float, pilot_balance: float, elasticity: float) -> float:
    """weight * (pilot_balance / REFERENCE_PILOT_BALANCE) ** (1 / elasticity): the weight
    whose pilot would reach the reference balance if balance ~ weight ** -elasticity."""
    return weight * (pilot_balance / REFERENCE_PILOT_BALANCE) ** (1.0 / elasticity)


def _usable(value: float) -> bool:
    return value > 0 and math.isfinite(value)


def piloted_style_weight(
    strength: float, start_weight: float, pilot: Callable[[float], float], style_loss: str
) -> tuple[float, float]:
    """The style weight for `strength`: the start weight corrected by one pilot.

    Args:
        strength: The dial: 0 is the photo, 1 the reference balance, above 1 stronger.
        start_weight: The strength-1 start weight (calibrated_style_weight(1, ...)),
            which the pilot runs with.
        pilot: weight -> the balance (weighted content / weighted style) after a pilot
            with that weight; NaN when it failed.
        style_loss: "gram" or "wasserstein" (its ELASTICITY).

    Returns:
        strength * corrected_weight(start_weight, B, ELASTICITY[style_loss]) and the
        pilot's balance B (NaN when no pilot ran). A pilot that failed or did not move (B
        not finite and positive) leaves strength * start_weight.
    """
    if strength == 0 or not start_weight > 0:
        return 0.0, math.nan
    measured = pilot(start_weight)
    if not _usable(measured):
        return strength * start_weight, measured
    return strength * corrected_weight(start_weight, measured, ELASTICITY[style_loss]), measured
