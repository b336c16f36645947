"""The settings nst-tf-video adds to a Config: the temporal loss, how frames start, the
flow, and which frames of the clip (TF-free, like every settings module)."""

from __future__ import annotations

import dataclasses

import numpy as np

from nst_tf.errors import ConfigError
from nst_tf.settings.config import INPUT, OUTPUT, RECIPE, setting

FRAME_INITS = ("warped", "previous", "content")
FLOWS = ("dis",)


@dataclasses.dataclass
class VideoSettings:
    """What a video run adds to a Config; each setting is described once, in its field."""

    temporal_weight: float = setting(
        2e4,
        "Weight of the temporal loss holding each frame to the previous stylised frame "
        "warped along the flow, where the flow is reliable; 0 turns it off.",
        RECIPE,
    )
    frame_init: str = setting(
        "warped",
        "How frames after the first start: warped (the previous stylised frame warped "
        "along the flow), previous (unwarped), or content (each frame on its own).",
        RECIPE,
    )
    frame_steps: int = setting(
        30,
        "Iterations for every frame after the first, at the output size (the first frame "
        "gets the whole multi-scale schedule).",
        RECIPE,
    )
    flow: str = setting("dis", "Optical flow: dis (OpenCV's DIS, on the content frames).", RECIPE)
    fps: float | None = setting(
        None, "Frame rate of the output; default: the input's (24 for a frames folder).", OUTPUT
    )
    start: int = setting(0, "First frame to take, counted from 0.", INPUT)
    frames: int | None = setting(None, "How many frames to take; default: to the end.", INPUT)

    def validate(self) -> VideoSettings:
        """Checks the settings; returns them.

        Raises:
            ConfigError: naming the setting and what would work.
        """
        if not np.isfinite(self.temporal_weight) or self.temporal_weight < 0:
            raise ConfigError(
                f"--temporal_weight must be a finite number >= 0, got {self.temporal_weight}"
            )
        if self.frame_init not in FRAME_INITS:
            raise ConfigError(
                f"--frame_init={self.frame_init!r} is unknown; choose {', '.join(FRAME_INITS)}"
            )
        if self.flow not in FLOWS:
            raise ConfigError(f"--flow={self.flow!r} is unknown; choose {', '.join(FLOWS)}")
        if self.frame_steps <= 0:
            raise ConfigError(f"--frame_steps must be positive, got {self.frame_steps}")
        if self.fps is not None and not (np.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise ConfigError(f"--fps must be in (0, 1000], got {self.fps}")
        if self.start < 0:
            raise ConfigError(f"--start must be >= 0 (a frame index from 0), got {self.start}")
        if self.frames is not None and self.frames <= 0:
            raise ConfigError(f"--frames must be positive, got {self.frames}")
        return self
