"""What a run tells its callbacks after every step: the Progress value, the clock behind
its ETA, and the reporter that turns the step's one read into a Progress."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from nst_tf.errors import NumericalError


@dataclasses.dataclass
class Progress:
    """What the loop hands to callbacks after every step.

    Attributes:
        step: Global step, counted across all scales, starting at 1.
        scale: Index of the current scale (0 = coarsest).
        size: Long side of the current scale in pixels.
        losses: Named loss values ("total", "content", "style", "tv", "style/<layer>").
        seconds_per_step: Wall time of this step.
        image: Callable returning the current image as a float32 [H, W, 3] array (a
            read from the device: call it only when the image is needed).
        traces: How many times the step has been traced so far by this Stylizer.
        total_steps: Steps of the whole run, over all scales.
        elapsed: Seconds since this call of stylize() began.
        first_step: The first step this call ran (after a resume, later than 1).
        work: Pixels processed by the end of each step, from work[0] = 0 to
            work[total_steps]: a step of a scale twice as large costs about four
            times as much, so the ETA weighs steps by their pixels. Empty: by steps.
    """

    step: int
    scale: int
    size: int
    losses: dict[str, float]
    seconds_per_step: float
    image: Callable[[], np.ndarray]
    traces: int = 0
    total_steps: int = 0
    elapsed: float = 0.0
    first_step: int = 1
    work: Sequence[float] = ()

    @property
    def eta(self) -> float | None:
        """Seconds left, from the pace of the steps run so far (None at first).

        The pace is per pixel when `work` is known (a multi-scale run's later steps are
        the larger ones), else per step.
        """
        done = self.step - self.first_step + 1
        if done < 1 or self.total_steps <= 0:
            return None
        left = max(self.total_steps - self.step, 0)
        if len(self.work) == self.total_steps + 1 and self.step <= self.total_steps:
            done_work = self.work[self.step] - self.work[self.first_step - 1]
            if done_work > 0:
                return self.elapsed / done_work * (self.work[-1] - self.work[self.step])
        return self.elapsed / done * left


class Clock:
    """Wall time of one stylize() call, for progress and ETA."""

    def __init__(self, total_steps: int, first_step: int):
        self.start = self.last = time.perf_counter()
        self.total_steps, self.first_step = total_steps, first_step
        self.work: tuple[float, ...] = ()

    def tick(self) -> tuple[float, float]:
        """(seconds since the last tick, seconds since the start)."""
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        return seconds, now - self.start


class Reporter:
    """Turns each step's one read into a Progress for the callbacks, and names the term
    that went non-finite."""

    def __init__(self, stylizer, clock, callbacks, scale, size, variable, position):
        self.stylizer, self.clock, self.callbacks = stylizer, clock, callbacks
        self.scale, self.size, self.variable, self.position = scale, size, variable, position

    def __call__(self, values: np.ndarray) -> None:
        position = self.position
        position.step += 1
        position.scale_step += 1
        seconds, elapsed = self.clock.tick()
        variable = self.variable
        progress = Progress(
            step=position.step,
            scale=self.scale,
            size=self.size,
            losses=self.stylizer.objective.unpack(values),
            seconds_per_step=seconds,
            image=lambda: variable.numpy()[0],
            traces=self.stylizer.trace_count,
            total_steps=self.clock.total_steps,
            elapsed=elapsed,
            first_step=self.clock.first_step,
            work=self.clock.work,
        )
        for callback in self.callbacks:
            callback(progress)

    def check(self, values: np.ndarray) -> None:
        """Raises NumericalError naming the first loss term that is NaN or infinite."""
        terms = self.stylizer.objective.unpack(values)
        step = self.position.step + 1
        raw = [
            n for n in terms if n not in ("total", "grad_norm") and not n.startswith("weighted/")
        ]
        bad = [n for n in raw if not math.isfinite(terms[n])]
        if bad:
            culprit = f"the {bad[0]} loss became {terms[bad[0]]}"
        elif not math.isfinite(terms["total"]):
            culprit = f"the weighted total overflowed to {terms['total']}"
        else:
            culprit = "the gradient became NaN or infinite"
        raise NumericalError(
            f"step {step}: {culprit}; lower --learning_rate or the loss weights "
            "(the last finite image was kept)"
        )
