"""The optimisers that move the image: Adam, L-BFGS in TensorFlow, and SciPy's L-BFGS-B.

Each receives the image variable and a ready `value_and_grad(x) -> (values, gradient)`
(values: the packed loss terms, the total first), so that any way of computing the
objective (whole image or tiled) serves all of them unchanged. Each `run` reads one
vector from the device per step and hands it to `on_step`; `check` receives the values
of an evaluation that was not finite and raises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from nst_tf.core.lbfgs import BoxLbfgs

OnStep = Callable[[np.ndarray], None]
Check = Callable[[np.ndarray], None]
Read = Callable[[tf.Tensor], np.ndarray]


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """The values the optimisers read.

    Attributes:
        learning_rate: Adam's step size (pixels per step at the start).
        adam_beta1: Adam's first-moment decay.
        adam_beta2: Adam's second-moment decay.
        lbfgs_memory: Curvature pairs L-BFGS keeps.
    """

    learning_rate: float
    adam_beta1: float
    adam_beta2: float
    lbfgs_memory: int

    @classmethod
    def of(cls, settings, **changes) -> OptimizerSettings:
        """The optimisers' values read from any settings object with these attributes
        (a Config), with `changes` applied."""
        values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)}
        return cls(**{**values, **changes})


class Adam:
    """Adam on the image, projected onto 0..255 after every step; its moments are part of
    the checkpoint."""

    def __init__(self, image: tf.Variable, value_and_grad: Callable, settings: OptimizerSettings):
        self.image, self.value_and_grad = image, value_and_grad
        # A tiny epsilon keeps Adam invariant to the loss scale, which the weights change.
        self.optimizer = keras.optimizers.Adam(
            learning_rate=float(settings.learning_rate),
            beta_1=float(settings.adam_beta1),
            beta_2=float(settings.adam_beta2),
            epsilon=1e-8,
        )
        # Creating the slots now, not on the first call, spares tf.function a second trace.
        self.optimizer.build([image])

    def state(self) -> dict:
        """The tf.train objects a checkpoint must hold besides the image."""
        return {"optimizer": self.optimizer}

    def reset(self) -> None:
        """Forgets the moments and the step count: a fresh start on a new image."""
        rate = self.optimizer.learning_rate
        for variable in self.optimizer.variables:
            if variable is not rate:
                variable.assign(tf.zeros_like(variable))

    @tf.function
    def _evaluate(self):
        return self.value_and_grad(self.image.read_value())

    @tf.function
    def _apply(self, grad):
        self.optimizer.apply_gradients([(grad, self.image)])
        # Projected gradient descent: stay inside the valid pixel range throughout,
        # rather than clamping an unbounded result at the end.
        self.image.assign(tf.clip_by_value(self.image, 0.0, 255.0))

    def run(self, steps: int, on_step: OnStep, check: Check, read: Read) -> int:
        """Runs `steps` Adam steps; returns how many ran."""
        for _ in range(steps):
            values, grad = self._evaluate()
            values = read(values)
            if not np.all(np.isfinite(values)):
                check(values)  # before the update: the image stays finite
            self._apply(grad)
            on_step(values)
        return steps


class Lbfgs:
    """L-BFGS within the pixel bounds, in TensorFlow (nst_tf.core.lbfgs.BoxLbfgs).

    Each run() is a fresh minimisation, so at a checkpoint the image is the whole
    optimiser state and a resumed run repeats an uninterrupted one exactly.
    """

    def __init__(self, image: tf.Variable, value_and_grad: Callable, settings: OptimizerSettings):
        self.minimizer = BoxLbfgs(image, value_and_grad, memory=settings.lbfgs_memory)

    def state(self) -> dict:
        """Nothing beyond the image (see the class docstring)."""
        return {}

    def reset(self) -> None:
        """Nothing to do: every run starts with an empty history."""

    def run(self, steps: int, on_step: OnStep, check: Check, read: Read) -> int:
        """Runs up to `steps` iterations; returns how many ran (fewer at a minimum)."""
        return self.minimizer.run(steps, on_step, check, read)


class ScipyLbfgs:
    """SciPy's L-BFGS-B within the pixel bounds: the reference for Lbfgs.

    Same method, but its single-threaded float64 bookkeeping costs 0.22 s an
    iteration at 512x342 px with 20 pairs (0.45 s with 50), plus seconds of set-up per
    run; see nst_tf.core.lbfgs. SciPy lives on the host, so the gradient crosses to it at every
    evaluation. Each run() is a fresh minimisation, as in Lbfgs.
    """

    def __init__(self, image: tf.Variable, value_and_grad: Callable, settings: OptimizerSettings):
        self.image, self.value_and_grad = image, value_and_grad
        self.memory = settings.lbfgs_memory

    def state(self) -> dict:
        """Nothing beyond the image."""
        return {}

    def reset(self) -> None:
        """Nothing to do: every run starts afresh."""

    def run(self, steps: int, on_step: OnStep, check: Check, read: Read) -> int:
        """Runs up to `steps` iterations of SciPy's L-BFGS-B; returns how many ran."""
        import scipy.optimize  # pylint: disable=import-outside-toplevel

        image, shape = self.image, tuple(self.image.shape)
        last, ran = {}, [0]

        def fun(x):
            values, grad = self.value_and_grad(tf.constant(x.reshape(shape), tf.float32))
            values = read(values)
            if not np.all(np.isfinite(values)):
                check(values)
            last["values"] = values
            return float(values[0]), grad.numpy().astype(np.float64).ravel()

        def callback(intermediate_result):
            image.assign(intermediate_result.x.reshape(shape).astype(np.float32))
            ran[0] += 1
            on_step(last["values"])

        # fun evaluates trial points without moving the image, and callback moves it to
        # each accepted point: whatever stops the run, the image is the last accepted.
        result = scipy.optimize.minimize(
            fun,
            image.numpy().astype(np.float64).ravel(),
            jac=True,
            method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(0.0, 255.0),
            callback=callback,
            # ftol/gtol 0: run the iterations asked for; the loss scale is arbitrary.
            options={
                "maxiter": steps,
                "maxfun": 2 * steps + 10,
                "maxcor": self.memory,
                "ftol": 0.0,
                "gtol": 0.0,
            },
        )
        image.assign(result.x.reshape(shape).astype(np.float32))
        return ran[0]


OPTIMIZERS = {"adam": Adam, "lbfgs": Lbfgs, "lbfgs_scipy": ScipyLbfgs}
