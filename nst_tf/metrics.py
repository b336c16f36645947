"""A second opinion on a result: measures of quality that are not the objective it optimised.

The defaults were tuned on nst_tf's own objective, and a change can lower that number
while making the picture worse. These measures come from elsewhere in the literature:

- **colour distance**: the Hellinger distance between the RGB-uv log-chroma histograms of
  the output and the style (HistoGAN, Afifi et al. 2021, the colour measure StyleID and
  later style-transfer papers report): does the output carry the style's palette?
- **content structure**: SSIM (Wang et al. 2004, Gaussian 11x11 window, sigma 1.5) of the
  output's luminance against the content's: how much of the photo's structure is kept.
- **style distance**: the sliced Wasserstein distance between the output's and the
  style's VGG19 feature distributions at the style layers, with fixed random
  projections: the whole distribution of features rather than the Gram matrix (or the
  mean and covariance) that the objective matches.
- **objective**: nst_tf's own total loss for the pair, for comparison.

The features are computed in float32 on the images as given (RGB in 0..255).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from nst_tf.engine.stylizer import Stylizer, resize_images
from nst_tf.io.images import scaled_shape
from nst_tf.model.features import FeatureExtractor
from nst_tf.settings.config import joined
from nst_tf.settings.files import InputFiles
from nst_tf.settings.recipe import Recipe
from nst_tf.settings.runtime import Runtime

# HistoGAN's RGB-uv histogram: 64x64 bins over log-chroma in [-3, 3], inverse-quadratic
# kernel of width 0.02, each pixel weighted by its intensity sqrt(R^2 + G^2 + B^2).
HISTOGRAM_BINS = 64
HISTOGRAM_LIMIT = 3.0
HISTOGRAM_SIGMA = 0.02
_EPS = 1e-6
# Pixels per chunk of a histogram: [pixels, bins] kernels that stay in cache (3.7 s against
# 12.2 s with 64k-pixel chunks at 512x343, on the shared 2-core AVX-512 machine).
_CHUNK = 1 << 13

# The columns of a report, in table order: (key, heading, which way is better).
COLUMNS = (
    ("color_hellinger", "colour distance to style (Hellinger, RGB-uv)", "lower"),
    ("style_swd", "style distance (sliced Wasserstein, VGG19)", "lower"),
    ("ssim_luminance", "content SSIM (luminance)", "higher"),
    ("objective", "nst_tf objective", "lower"),
)


def rgb_uv_histogram(
    image: np.ndarray,
    bins: int = HISTOGRAM_BINS,
    limit: float = HISTOGRAM_LIMIT,
    sigma: float = HISTOGRAM_SIGMA,
) -> np.ndarray:
    """HistoGAN's RGB-uv log-chroma histogram of an RGB image, normalised to sum 1.

    For each channel c with others a, b, a pixel votes at (u, v) = (log c - log a,
    log c - log b) with weight sqrt(R^2 + G^2 + B^2), spread over the bins by the kernel
    1 / (1 + (d / sigma)^2) in each coordinate.

    Args:
        image: [H, W, 3] RGB in 0..255.
        bins: Bins per coordinate.
        limit: The bins' centres span [-limit, limit].
        sigma: The kernel's width in log-chroma units.

    Returns:
        [3, bins, bins] float64 (one plane per channel R, G, B), summing to 1.
    """
    # float32 kernels in cache-sized chunks, summed in float64.
    pixels = np.clip(np.asarray(image, np.float32).reshape(-1, 3) / 255.0, 0.0, 1.0)
    centres = np.linspace(-limit, limit, bins, dtype=np.float32)
    log = np.log(pixels + np.float32(_EPS))
    weight = np.sqrt(np.sum(pixels**2, axis=1) + np.float32(_EPS))
    inv_sigma = np.float32(1.0 / sigma)
    hist = np.zeros((3, bins, bins))
    others = ((1, 2), (0, 2), (0, 1))
    for start in range(0, len(pixels), _CHUNK):
        part = slice(start, start + _CHUNK)
        for channel, (a, b) in enumerate(others):
            u = log[part, channel] - log[part, a]
            v = log[part, channel] - log[part, b]
            ku = 1.0 / (1.0 + ((u[:, None] - centres) * inv_sigma) ** 2)
            kv = 1.0 / (1.0 + ((v[:, None] - centres) * inv_sigma) ** 2)
            hist[channel] += ((weight[part, None] * ku).T @ kv).astype(np.float64)
    return hist / (hist.sum() + _EPS)


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    """The Hellinger distance between two histograms of equal shape, each summing to 1:
    ||sqrt(p) - sqrt(q)||_2 / sqrt(2), from 0 (the same) to 1 (disjoint)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    return float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)) / np.sqrt(2.0))


def color_distance(output: np.ndarray, style: np.ndarray) -> float:
    """Hellinger distance between the RGB-uv histograms of two RGB images (0..255)."""
    return hellinger(rgb_uv_histogram(output), rgb_uv_histogram(style))


def luminance(image: np.ndarray) -> np.ndarray:
    """BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B of an [H, W, 3] image, [H, W]."""
    return np.asarray(image, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def ssim(x: np.ndarray, y: np.ndarray, max_val: float = 255.0) -> float:
    """Mean SSIM of two single-channel [H, W] images, in float64.

    Wang et al. 2004's definition and constants: Gaussian-weighted means, variances and
    covariance over every 11x11 window inside the image (sigma 1.5), K1 0.01, K2 0.03;
    both sides must be at least 11 px.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 2 or min(x.shape) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs two [H, W] images of one shape, sides >= 11: {x.shape}")
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mx, my = _gaussian_windows(x), _gaussian_windows(y)
    vx = _gaussian_windows(x * x) - mx**2
    vy = _gaussian_windows(y * y) - my**2
    cov = _gaussian_windows(x * y) - mx * my
    index = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(np.mean(index))


_SSIM_WINDOW = 11


def _gaussian_windows(image: np.ndarray) -> np.ndarray:
    """The Gaussian-weighted mean (sigma 1.5) of every 11x11 window inside `image`:
    separable, one axis at a time."""
    taps = np.exp(-((np.arange(_SSIM_WINDOW) - _SSIM_WINDOW // 2) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()
    view = np.lib.stride_tricks.sliding_window_view
    rows = view(image, _SSIM_WINDOW, axis=0) @ taps
    return view(rows, _SSIM_WINDOW, axis=1) @ taps


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, projections: int = 64, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two point sets [n, C] and [m, C].

    Both sets are projected on `projections` random unit directions (fixed by `seed`,
    so every report uses the same ones); on each, the 2-Wasserstein distance of the
    projected sets is that of their sorted values (their quantiles, at min(n, m) levels
    when the sizes differ). The result is the root of the mean squared distance.

    Args:
        x: The first set, one point per row.
        y: The second, with as many columns.
        projections: How many directions.
        seed: The directions' seed.
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"point sets of shapes {x.shape} and {y.shape} do not match")
    directions = np.random.default_rng(seed).standard_normal((x.shape[1], projections))
    directions = (directions / np.linalg.norm(directions, axis=0)).astype(np.float32)
    levels = min(len(x), len(y))
    a = _quantiles(np.sort(x @ directions, axis=0), levels)
    b = _quantiles(np.sort(y @ directions, axis=0), levels)
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


def _quantiles(sorted_values: np.ndarray, levels: int) -> np.ndarray:
    """Each column's quantiles at (k + 0.5) / levels, k < levels, by linear interpolation
    of the sorted values (exactly the values themselves when there are `levels` rows)."""
    n = len(sorted_values)
    if n == levels:
        return sorted_values
    position = (np.arange(levels) + 0.5) / levels * n - 0.5
    low = np.clip(np.floor(position).astype(int), 0, n - 1)
    high = np.minimum(low + 1, n - 1)
    frac = np.clip(position - low, 0.0, 1.0)[:, None]
    return sorted_values[low] * (1 - frac) + sorted_values[high] * frac


def resized(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The image at `shape`'s height and width (bicubic, as a run resizes it)."""
    if image.shape[:2] == tuple(shape[:2]):
        return image
    return resize_images(tf.constant(image[None]), *shape[:2]).numpy()[0]


def _report_recipe(recipe: Recipe | None) -> Recipe:
    # Single scale (the objective at the output's size), the output's own colours.
    return dataclasses.replace(recipe or Recipe(), min_size=0, preserve_color="none")


class QualityScorer:
    """The network and objective a report uses, built once for many reports.

    Args:
        recipe: The run's recipe (layers, weights, style loss); default Recipe().
        model: A FeatureExtractor for the recipe's layers (float32), or None to build one.
        projections: Directions of the sliced Wasserstein distance.
        seed: Their seed.
        vgg_weights: The VGG19 weights to build the model from (as --vgg_weights).
    """

    def __init__(
        self,
        recipe: Recipe | None = None,
        model: FeatureExtractor | None = None,
        projections: int = 64,
        seed: int = 0,
        vgg_weights: str = "auto",
    ):
        self.recipe = _report_recipe(recipe)
        if model is None:
            model = FeatureExtractor(
                self.recipe.layers, vgg_weights, "float32", self.recipe.pooling
            )
        self.model = model
        # One float32 scorer whatever the run used, untiled unless the memory plan says
        # otherwise.
        inputs, runtime = InputFiles(vgg_weights=vgg_weights), Runtime(precision="float32")
        self.stylizer = Stylizer(joined(self.recipe, inputs, runtime=runtime), model)
        self.projections, self.seed = projections, seed

    def style_distance(self, output: np.ndarray, style: np.ndarray) -> dict[str, float]:
        """Sliced Wasserstein distance per style layer between output and style features.

        The style is taken at the output's long side (as the run measures it with
        --style_scale 1). Returns the distance by layer and their mean under "mean".
        """
        size = max(output.shape[:2])
        style_at = resize_images(tf.constant(style[None]), *scaled_shape(*style.shape[:2], size))
        ours = self.model(tf.constant(output[None]))
        theirs = self.model(style_at)
        layers = tuple(self.stylizer.objective.style_weights)
        per_layer = {}
        for name in layers:
            channels = ours[name].shape[-1]
            per_layer[name] = sliced_wasserstein(
                ours[name].numpy().reshape(-1, channels),
                theirs[name].numpy().reshape(-1, channels),
                self.projections,
                self.seed,
            )
        per_layer["mean"] = float(np.mean([per_layer[name] for name in layers]))
        return per_layer

    def objective(
        self, output: np.ndarray, content: np.ndarray, style: np.ndarray
    ) -> dict[str, float]:
        """nst_tf's loss terms for the output, the content taken at the output's shape
        and the style at its long side (as the final scale of a run compares them)."""
        stylizer = self.stylizer
        size = max(output.shape[:2])
        targets = stylizer.targets(stylizer.prepare(resized(content, output.shape), style), size)
        return stylizer.evaluate(output[None], targets)

    def report(self, output: np.ndarray, content: np.ndarray, style: np.ndarray) -> dict:
        """See quality_report."""
        output, content, style = (np.asarray(a, np.float32) for a in (output, content, style))
        for name, image in (("output", output), ("content", content), ("style", style)):
            if image.ndim != 3 or image.shape[-1] != 3:
                raise ValueError(f"{name} must be [H, W, 3] RGB, got shape {image.shape}")
        swd = self.style_distance(output, style)
        terms = self.objective(output, content, style)
        return {
            "color_hellinger": color_distance(output, style),
            "ssim_luminance": ssim(luminance(output), luminance(resized(content, output.shape))),
            "style_swd": swd["mean"],
            "style_swd_layers": {k: v for k, v in swd.items() if k != "mean"},
            "objective": terms["total"],
            "objective_terms": {k: terms[k] for k in ("content", "style", "tv")},
        }


def quality_report(
    output: np.ndarray,
    content: np.ndarray,
    style: np.ndarray,
    recipe: Recipe | None = None,
    model: FeatureExtractor | None = None,
    projections: int = 64,
    seed: int = 0,
    vgg_weights: str = "auto",
) -> dict:
    """Measures of a stylised output against its content and its style.

    Args:
        output: The result, [H, W, 3] RGB in 0..255.
        content: The content photo, any size (resized to the output's shape).
        style: The style image, any size (taken at the output's long side for the
            feature measures, as a run takes it).
        recipe: The run's recipe, for the objective and the style layers; default
            Recipe(). Scored in float32 at one scale whatever the run used.
        model: A float32 FeatureExtractor for the recipe's layers, to share between
            reports (see QualityScorer for many reports).
        projections: Directions of the sliced Wasserstein distance.
        seed: Their seed (fixed, so that reports compare).
        vgg_weights: The VGG19 weights to build the model from (as --vgg_weights).

    Returns:
        A dict: "color_hellinger" (output vs style, 0..1, lower is closer),
        "ssim_luminance" (output vs content, at most 1, higher keeps more structure),
        "style_swd" (mean over the style layers, lower is closer) and
        "style_swd_layers" (by layer), "objective" (nst_tf's total loss) and
        "objective_terms" (its unweighted content, style and TV terms).
    """
    scorer = QualityScorer(recipe, model, projections, seed, vgg_weights)
    return scorer.report(output, content, style)


def markdown_table(rows: Mapping[str, Mapping], columns: Sequence[tuple] = COLUMNS) -> str:
    """A Markdown table of reports: one row per name, one column per measure."""
    head = "| | " + " | ".join(f"{title} ({better} is better)" for _, title, better in columns)
    lines = [head + " |", "|---" * (len(columns) + 1) + "|"]
    for name, report in rows.items():
        cells = [_format(report[key]) for key, _, _ in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
