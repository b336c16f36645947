"""nst_tf.metrics against independent references: hand values and plain numpy loops."""

import math

import numpy as np
import pytest
from conftest import LAYERS

from nst_tf import metrics
from nst_tf.engine.stylizer import Stylizer
from nst_tf.settings.config import Config
from nst_tf.settings.recipe import Recipe


def test_hellinger_of_identical_histograms_is_zero_and_of_disjoint_ones_one():
    p = np.array([0.2, 0.3, 0.5])
    assert metrics.hellinger(p, p) == 0.0
    assert metrics.hellinger([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    # sqrt(1 - Bhattacharyya coefficient), BC = sqrt(0.5 * 1) by hand.
    assert metrics.hellinger([0.5, 0.5], [1.0, 0.0]) == pytest.approx(math.sqrt(1 - math.sqrt(0.5)))


def _histogram_by_loops(image, bins, limit, sigma):
    # HistoGAN's definition written pixel by pixel and bin by bin.
    centres = [-limit + 2 * limit * k / (bins - 1) for k in range(bins)]
    hist = np.zeros((3, bins, bins))
    for r, g, b in np.asarray(image, np.float64).reshape(-1, 3) / 255.0:
        rgb = (r, g, b)
        weight = math.sqrt(r * r + g * g + b * b + 1e-6)
        for c, (a, o) in enumerate(((1, 2), (0, 2), (0, 1))):
            u = math.log(rgb[c] + 1e-6) - math.log(rgb[a] + 1e-6)
            v = math.log(rgb[c] + 1e-6) - math.log(rgb[o] + 1e-6)
            for i, cu in enumerate(centres):
                for j, cv in enumerate(centres):
                    ku = 1 / (1 + ((u - cu) / sigma) ** 2)
                    kv = 1 / (1 + ((v - cv) / sigma) ** 2)
                    hist[c, i, j] += weight * ku * kv
    return hist / (hist.sum() + 1e-6)


def test_rgb_uv_histogram_matches_its_definition_and_peaks_at_the_chroma():
    image = np.array([[[200.0, 100.0, 50.0], [30.0, 90.0, 250.0], [0.0, 0.0, 0.0]]])
    ours = metrics.rgb_uv_histogram(image, bins=9, limit=3.0, sigma=0.3)
    np.testing.assert_allclose(ours, _histogram_by_loops(image, 9, 3.0, 0.3), rtol=1e-5, atol=1e-9)
    assert ours.sum() == pytest.approx(1.0)
    # One colour: the R plane peaks at the bin of (log R/G, log R/B) = (log 2, log 4).
    plane = metrics.rgb_uv_histogram(np.full((4, 4, 3), (200.0, 100.0, 50.0)))[0]
    centres = np.linspace(-3, 3, 64)
    i, j = np.unravel_index(np.argmax(plane), plane.shape)
    assert i == np.argmin(abs(centres - math.log(2))) and j == np.argmin(abs(centres - math.log(4)))


def test_colour_distance_is_zero_for_one_image_and_grows_with_the_hue_change():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (16, 16, 3))
    assert metrics.color_distance(image, image) == pytest.approx(0.0, abs=1e-7)
    warmer = np.clip(image * (1.0, 0.9, 0.8), 0, 255)
    warmest = np.clip(image * (1.0, 0.6, 0.3), 0, 255)
    assert 0 < metrics.color_distance(image, warmer) < metrics.color_distance(image, warmest) < 1


def _ssim_by_windows(x, y, max_val=255.0):
    # Wang et al.'s SSIM: Gaussian-weighted statistics of every 11x11 window inside.
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2
            cov = (w * a * b).sum() - ma * mb
            values.append(
                (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(values))


def test_ssim_of_an_image_with_itself_is_one_and_matches_wang_et_al():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (14, 13))
    y = np.clip(x + rng.normal(0, 40, x.shape), 0, 255)
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert metrics.ssim(x, y) == pytest.approx(_ssim_by_windows(x, y), abs=1e-9)
    # Two flat images: only the luminance term is left, (2ab + C1) / (a^2 + b^2 + C1).
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert metrics.ssim(np.full((12, 12), 100.0), np.full((12, 12), 110.0)) == pytest.approx(
        expected, abs=1e-9
    )


def test_luminance_is_bt601():
    assert metrics.luminance(np.array([[[255.0, 0.0, 0.0], [10.0, 20.0, 30.0]]]))[0] == (
        pytest.approx([0.299 * 255, 0.299 * 10 + 0.587 * 20 + 0.114 * 30])
    )


def test_sliced_wasserstein_of_identical_sets_is_zero_and_of_shifted_ones_the_shift():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(50, 8))
    assert metrics.sliced_wasserstein(points, points[::-1]) == 0.0
    line = rng.normal(size=(40, 1))
    assert metrics.sliced_wasserstein(line, line + 2.5) == pytest.approx(2.5, rel=1e-5)
    # Sets of different sizes meet at their quantiles: [0, 1, 2, 3] at levels 1/4 and 3/4
    # is (0.5, 2.5) against (0, 2): 0.5 apart at both.
    assert metrics.sliced_wasserstein(
        np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([[0.0], [2.0]])
    ) == pytest.approx(0.5)
    # The same seed, the same directions; the distance is symmetric.
    other = rng.normal(1.0, 2.0, size=(30, 8))
    assert metrics.sliced_wasserstein(points, other, seed=3) == metrics.sliced_wasserstein(
        points, other, seed=3
    )
    assert metrics.sliced_wasserstein(points, other) == pytest.approx(
        metrics.sliced_wasserstein(other, points), rel=1e-6
    )


def _photo():
    # A smooth blue-green gradient: the content.
    across, down = np.meshgrid(np.linspace(0, 1, 48), np.linspace(0, 1, 48))
    return np.stack([np.full_like(across, 40.0), 80 + 120 * across, 200 - 60 * down], axis=-1)


def _painting():
    # Orange and dark red stripes: a texture and a palette the photo does not have.
    rows = (np.arange(40) // 3) % 2
    stripes = np.where(rows[:, None, None], (230.0, 140.0, 30.0), (120.0, 20.0, 10.0))
    return np.broadcast_to(stripes, (40, 40, 3)).astype(np.float32)


def test_the_report_ranks_the_photo_itself_worse_than_a_stylised_output(model):
    content, style = _photo(), _painting()
    config = Config(size=48, min_size=0, steps=25, **LAYERS)
    output = Stylizer(config, model).stylize(content, style)
    scorer = metrics.QualityScorer(config, model)
    stylised = scorer.report(output, content, style)
    unchanged = scorer.report(content, content, style)
    assert stylised["style_swd"] < unchanged["style_swd"]
    assert stylised["color_hellinger"] < unchanged["color_hellinger"]
    assert stylised["objective"] < unchanged["objective"]
    assert unchanged["ssim_luminance"] == pytest.approx(1.0, abs=1e-6)
    assert stylised["ssim_luminance"] < 1.0
    assert set(stylised["style_swd_layers"]) == {"block1_conv1", "block2_conv1"}
    assert stylised["style_swd"] == pytest.approx(
        np.mean(list(stylised["style_swd_layers"].values()))
    )
    # The objective is the run's own: the Stylizer's evaluation of the same image; a
    # Recipe alone scores as the whole Config does.
    recipe = Recipe(size=48, min_size=0, steps=25, **LAYERS)
    again = metrics.quality_report(output, content, style, recipe, model)
    assert again["objective"] == pytest.approx(stylised["objective"], rel=1e-6)

    table = metrics.markdown_table({"stylised": stylised, "the photo": unchanged})
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| stylised | ")
    assert lines[0].count("|") == lines[2].count("|") == len(metrics.COLUMNS) + 2
