"""Optical flow and warping between video frames (Ruder, Dosovitskiy & Brox, 2016).

Arrays in, arrays out: frames are [H, W, 3] in 0..255, flows [H, W, 2] (dx, dy) float32.
OpenCV computes the flow (DIS) and does the warping; no settings, no files.
"""

from __future__ import annotations

import numpy as np


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2  # pylint: disable=import-outside-toplevel

    # DIS takes 8-bit gray: round and clip as a saved frame would be (io.images.to_uint8).
    return cv2.cvtColor(np.clip(np.round(frame), 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def optical_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """DIS optical flow [H, W, 2] (dx, dy): where each pixel of `source` is in `target`.

    Args:
        source: A frame [H, W, 3] in 0..255.
        target: Another frame of the same size.

    Returns:
        The flow, float32.
    """
    import cv2  # pylint: disable=import-outside-toplevel

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_gray(source), _gray(target), None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Samples `image` at x + flow(x) for every pixel x (bilinear, edges repeated).

    Args:
        image: [H, W, C] (or [H, W]) values.
        flow: [H, W, 2] (dx, dy).

    Returns:
        The warped image, float32, the shape of `image`.
    """
    import cv2  # pylint: disable=import-outside-toplevel

    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height))
    return cv2.remap(
        np.asarray(image, np.float32),
        grid_x + flow[..., 0],
        grid_y.astype(np.float32) + flow[..., 1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def consistency(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s reliability weights [H, W] in {0, 1} for frame t's pixels.

    `backward` maps frame t to t-1, `forward` maps t-1 to t. A pixel is unreliable where
    following the backward flow and then the forward flow does not come back (it was
    occluded in t-1: disocclusion), or where the backward flow changes sharply (a motion
    boundary).

    Args:
        backward: The flow [H, W, 2] from frame t to frame t-1.
        forward: The flow [H, W, 2] from frame t-1 to frame t.

    Returns:
        float32 weights, 1 where the flow is reliable.
    """
    forward_back = warp(forward, backward)
    round_trip = np.sum((backward + forward_back) ** 2, axis=-1)
    magnitude = np.sum(backward**2, axis=-1) + np.sum(forward_back**2, axis=-1)
    disoccluded = round_trip > 0.01 * magnitude + 0.5
    du_y, du_x = np.gradient(backward[..., 0])
    dv_y, dv_x = np.gradient(backward[..., 1])
    boundary = du_x**2 + du_y**2 + dv_x**2 + dv_y**2 > 0.01 * np.sum(backward**2, axis=-1) + 0.002
    return (~(disoccluded | boundary)).astype(np.float32)


def temporal_target(
    previous_output: np.ndarray, content: np.ndarray, previous_content: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The previous stylised frame warped onto this frame, and where that is reliable.

    Args:
        previous_output: The previous stylised frame [H, W, 3] in 0..255.
        content: This frame's content [H, W, 3].
        previous_content: The previous frame's content [H, W, 3].

    Returns:
        (warped [H, W, 3] clipped to 0..255, weights [H, W] in {0, 1}).
    """
    backward = optical_flow(content, previous_content)
    forward = optical_flow(previous_content, content)
    warped = np.clip(warp(previous_output, backward), 0, 255)
    return warped, consistency(backward, forward)


def flicker(outputs: list[np.ndarray], contents: list[np.ndarray]) -> float:
    """Mean absolute difference (0..255) between each output frame and the previous output
    frame warped along the input's flow, over the pixels the consistency check keeps.

    Args:
        outputs: Stylised frames [H, W, 3], in order.
        contents: The content frames they were made from, same size.

    Returns:
        The mean difference; 0 for outputs that follow the motion exactly.
    """
    total, count = 0.0, 0.0
    for t in range(1, len(outputs)):
        backward = optical_flow(contents[t], contents[t - 1])
        forward = optical_flow(contents[t - 1], contents[t])
        weights = consistency(backward, forward)[..., None]
        difference = np.abs(np.asarray(outputs[t], np.float32) - warp(outputs[t - 1], backward))
        total += float(np.sum(weights * difference))
        count += float(np.sum(weights)) * 3
    return total / max(count, 1.0)
