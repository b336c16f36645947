"""The in-graph box-constrained L-BFGS, against numpy's two-loop recursion and SciPy."""

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

from nst_tf.core.lbfgs import BoxLbfgs

RNG = np.random.default_rng(5)


def _quadratic(matrix, centre, variable):
    """f(x) = 0.5 (x - c)' A (x - c) on a flattened variable, with its gradient."""
    a = tf.constant(matrix, tf.float32)
    c = tf.constant(centre.ravel(), tf.float32)

    @tf.function
    def value_and_grad(x):
        r = tf.reshape(x, [-1]) - c
        ar = tf.linalg.matvec(a, r)
        return tf.stack([0.5 * tf.reduce_sum(r * ar)]), tf.reshape(ar, variable.shape)

    return value_and_grad


def _spd(n, condition):
    q, _ = np.linalg.qr(RNG.normal(size=(n, n)))
    return (q * np.geomspace(1.0, condition, n)) @ q.T


def _two_loop(pairs, g, gamma):
    """Nocedal and Wright's Algorithm 7.4: H g from (s, y) pairs, oldest first."""
    q, alphas = g.astype(np.float64), []
    for s, y in reversed(pairs):
        alpha = (s @ q) / (s @ y)
        q = q - alpha * y
        alphas.append(alpha)
    r = gamma * q
    for (s, y), alpha in zip(pairs, reversed(alphas), strict=True):
        r = r + s * (alpha - (y @ r) / (s @ y))
    return r


@pytest.mark.parametrize(
    "memory, pairs, forget_after", [(5, 3, 0), (4, 4, 0), (3, 7, 0), (6, 5, 3)]
)
def test_direction_matches_the_two_loop_recursion(memory, pairs, forget_after):
    """The compact form equals the two-loop recursion, after the ring wraps, and after
    the history is forgotten part-way round the ring (as a non-descent direction does)."""
    n = 30
    x = tf.Variable(RNG.uniform(100, 150, (2, 5, 3)).astype(np.float32))  # inside the box
    opt = BoxLbfgs(x, lambda point: None, memory=memory)
    matrix = _spd(n, 20.0)
    history = []
    for _ in range(pairs):
        s = RNG.normal(size=n)
        y = matrix @ s  # positive curvature
        before = tf.constant(RNG.uniform(100, 150, x.shape), tf.float32)
        g = tf.constant(RNG.normal(size=x.shape), tf.float32)
        opt._update(
            before,
            before + tf.constant(s.reshape(x.shape), tf.float32),
            g,
            g + tf.constant(y.reshape(x.shape), tf.float32),
        )
        # What was stored, in float32, is the reference's input.
        stored_s = (
            tf.reshape(before + s.reshape(x.shape), [-1]) - tf.reshape(before, [-1])
        ).numpy()
        stored_y = (tf.reshape(g + y.reshape(x.shape), [-1]) - tf.reshape(g, [-1])).numpy()
        history.append((stored_s.astype(np.float64), stored_y.astype(np.float64)))
        if len(history) == forget_after:
            opt._count.assign(0)
            history = []
    kept = history[-memory:]
    s, y = kept[-1]
    gamma = (s @ y) / (y @ y)
    grad = RNG.normal(size=n)
    direction, slope = opt._direction(
        tf.identity(x), tf.constant(grad.reshape(x.shape), tf.float32)
    )
    expected = -_two_loop(kept, grad, gamma)
    np.testing.assert_allclose(
        direction.numpy().ravel(), expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max()
    )
    assert float(slope) == pytest.approx(grad @ expected, rel=2e-3)


def test_bounded_quadratic_reaches_scipys_minimiser():
    n = 40
    matrix = _spd(n, 100.0)
    centre = RNG.uniform(-60, 315, (1, 2, 20))  # part of the minimum lies outside 0..255
    start = RNG.uniform(0, 255, centre.shape).astype(np.float32)
    x = tf.Variable(start)
    opt = BoxLbfgs(x, _quadratic(matrix, centre, x), memory=10)
    seen = []

    def on_step(values):
        seen.append(x.numpy().copy())

    ran = opt.run(300, on_step)
    assert 0 < ran <= 300
    reference = scipy.optimize.minimize(
        lambda v: (
            0.5 * (v - centre.ravel()) @ matrix @ (v - centre.ravel()),
            matrix @ (v - centre.ravel()),
        ),
        start.ravel().astype(np.float64),
        jac=True,
        method="L-BFGS-B",
        bounds=scipy.optimize.Bounds(0.0, 255.0),
        options={"ftol": 0.0, "gtol": 1e-10, "maxiter": 2000},
    )
    np.testing.assert_allclose(x.numpy().ravel(), reference.x, atol=0.05)
    assert (reference.x == 0).any() and (reference.x == 255).any()  # both bounds are active
    # Every accepted point lies in the box.
    assert all(point.min() >= 0 and point.max() <= 255 for point in seen)


def test_separable_problem_is_solved_exactly_by_clipping():
    """With a diagonal Hessian the box minimiser is the clipped unconstrained one.

    The tolerance is float32's: f is summed in float32, so steps below a few hundredths
    of a unit no longer change it measurably and the line search stops there.
    """
    centre = RNG.uniform(-100, 355, (3, 4, 5))
    matrix = np.diag(RNG.uniform(0.5, 4.0, centre.size))
    x = tf.Variable(np.full(centre.shape, 128.0, np.float32))
    BoxLbfgs(x, _quadratic(matrix, centre, x), memory=5).run(100, lambda *a: None)
    np.testing.assert_allclose(x.numpy(), np.clip(centre, 0, 255), atol=0.05)


def test_a_non_finite_evaluation_stops_at_the_last_accepted_point():
    centre = RNG.uniform(0, 255, (1, 3, 4, 3))
    x = tf.Variable(np.full(centre.shape, 128.0, np.float32))
    inner = _quadratic(np.eye(centre.size), centre, x)
    calls = tf.Variable(0)

    @tf.function
    def value_and_grad(point):
        calls.assign_add(1)
        values, grad = inner(point)
        # The fourth evaluation is NaN, as a diverging loss would be.
        return tf.where(calls == 4, np.nan, values), grad

    accepted, checked = [], []

    def check(values):
        checked.append(values)
        raise FloatingPointError("stop")

    opt = BoxLbfgs(x, value_and_grad, memory=3)
    with pytest.raises(FloatingPointError):
        opt.run(50, lambda values: accepted.append(x.numpy().copy()), check)
    assert int(calls.numpy()) == 4 and np.isnan(checked[0][0])
    np.testing.assert_array_equal(x.numpy(), accepted[-1])


def test_one_read_per_iteration():
    """What crosses to the host is one vector per iteration, line search included."""
    centre = RNG.uniform(-50, 300, (1, 4, 5, 3))
    x = tf.Variable(np.full(centre.shape, 100.0, np.float32))
    reads = []

    def read(tensor):
        reads.append(tensor)
        return tensor.numpy()

    ran = BoxLbfgs(x, _quadratic(_spd(centre.size, 30.0), centre, x), memory=4).run(
        12, lambda values: None, read=read
    )
    assert ran == 12 and len(reads) == 12


def test_stops_when_no_descent_is_left():
    """At the box minimum every free gradient is zero: the run ends early."""
    centre = np.full((1, 2, 2, 3), 400.0)  # minimum outside: every pixel ends at 255
    x = tf.Variable(np.full(centre.shape, 255.0, np.float32))
    ran = BoxLbfgs(x, _quadratic(np.eye(centre.size), centre, x), memory=3).run(10, lambda *a: None)
    assert ran == 0
    np.testing.assert_array_equal(x.numpy(), 255.0)
