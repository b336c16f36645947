"""The memory of a trained TransformNet's forward pass, estimated without TensorFlow.

nst-tf-batch reserves each worker's memory before any worker starts, and engine.feedforward
decides with the same estimate whether a pass is tiled. TF-free.
"""

from __future__ import annotations

# Peak bytes of a float32 forward pass per input pixel and per channel of the network's
# first stage (a full-resolution map of `width` channels is 4 bytes a pixel a channel;
# padding copies, the norm's temporaries and the decoder's resize hold several at once).
FORWARD_BYTES_PER_CHANNEL_PIXEL = 40.0
# Fixed bytes per pixel: the image in and out, float32 RGB, and their copies.
FORWARD_BYTES_PER_PIXEL = 64.0


def forward_peak_bytes(network_width: int, height: int, width: int) -> float:
    """Estimated peak memory of one untiled forward pass.

    Args:
        network_width: The channels of the network's first stage (TransformNet.width).
        height, width: The image's size in pixels.
    """
    per_pixel = FORWARD_BYTES_PER_CHANNEL_PIXEL * network_width + FORWARD_BYTES_PER_PIXEL
    return per_pixel * height * width
