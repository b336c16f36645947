"""Style targets as a file: a style's Gram matrices, computed once, reused by many runs.

The file is a plain .npz (read with allow_pickle=False: data only) holding, per layer,
`gram_<layer>`, plus the layer names, the size the style was measured at, the
normalisation and the sha256 of the VGG19 weights. A run refuses a file made with other
weights, layers or normalisation, since its Gram matrices would not be comparable.

The file is untrusted: before any array is read, every member's shape and dtype are
checked from its .npy header against what VGG19 can produce (one [1, C, C] float Gram
matrix per layer, C = 64...512), so a crafted file costs at most the ~3.5 MB that real
targets of all 16 layers take, and holds no NaN or infinity.
"""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np

from nst_tf.errors import ConfigError
from nst_tf.io.images import atomic_write
from nst_tf.io.paths import check_regular_file, shown
from nst_tf.model.vgg19 import VGG19_CONV_LAYERS, layer_channels

# Scalar and name members: at most this many characters each (a sha256 is 64).
_MAX_TEXT = 256


@dataclasses.dataclass
class StyleTargets:
    """A style's Gram matrices by layer, and what they were computed with."""

    grams: dict[str, np.ndarray]
    size: int
    normalization: str
    weights_sha256: str
    pooling: str = "max"

    def save(self, path: str) -> None:
        """Writes the targets atomically as .npz."""
        arrays = {f"gram_{name}": gram.astype(np.float32) for name, gram in self.grams.items()}
        with atomic_write(path) as f:
            np.savez(
                f,
                layers=np.array(list(self.grams)),
                size=np.array(self.size),
                normalization=np.array(self.normalization),
                weights_sha256=np.array(self.weights_sha256),
                pooling=np.array(self.pooling),
                **arrays,
            )


def _expected(member: str) -> tuple[str, tuple[int, ...] | None] | None:
    """(dtype kinds allowed, shape; None: any length up to 16) of a known member."""
    name = member.removesuffix(".npy")
    if name.startswith("gram_") and name[5:] in VGG19_CONV_LAYERS:
        channels = layer_channels(name[5:])
        return "f", (1, channels, channels)
    return {
        "layers": ("U", None),
        "size": ("iu", ()),
        "normalization": ("U", ()),
        "weights_sha256": ("U", ()),
        "pooling": ("U", ()),
    }.get(name)


def _check_headers(path: str) -> None:
    """Checks each member's .npy header (shape, dtype) before any data is read."""
    label = f"--style_targets={shown(path)}"
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            expected = _expected(member)
            if expected is None:
                raise ConfigError(
                    f"{label} is not a style targets file (it holds {member!r}); "
                    "re-export it with nst-tf-export"
                )
            with archive.open(member) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"npy format {version}")
            kinds, want = expected
            too_big = dtype.itemsize > (4 * _MAX_TEXT if dtype.kind == "U" else 8)
            if want is None:  # the layer names: a short list
                fits = len(shape) == 1 and shape[0] <= len(VGG19_CONV_LAYERS)
            else:
                fits = shape == want
            if dtype.kind not in kinds or too_big or not fits:
                must = f", must be {want} float" if want and len(want) == 3 else ""
                raise ConfigError(
                    f"{label} is not a style targets file of VGG19 ({member[:-4]} has shape "
                    f"{shape}, dtype {dtype}{must}); re-export it with nst-tf-export"
                )


def load_style_targets(path: str) -> StyleTargets:
    """Reads a targets file written by `nst-tf-export --targets_out`.

    Raises:
        ConfigError: the file is missing, not a targets file, malformed (wrong shapes,
            channel counts, batch or dtype for VGG19), or holds NaN or infinity.
    """
    label = f"--style_targets={shown(path)}"
    check_regular_file(path, ConfigError, label)
    try:
        _check_headers(path)
        with np.load(path, allow_pickle=False) as data:
            layers = [str(name) for name in data["layers"]]
            grams = {name: np.asarray(data[f"gram_{name}"], np.float32) for name in layers}
            targets = StyleTargets(
                grams,
                int(data["size"]),
                str(data["normalization"]),
                str(data["weights_sha256"]),
                str(data["pooling"]) if "pooling" in data else "max",
            )
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"{label} is not a style targets file; "
            "make one with nst-tf-export --style=IMG --targets_out=FILE.npz"
        ) from None
    for name, gram in targets.grams.items():
        if not np.isfinite(gram).all():
            raise ConfigError(
                f"{label}: gram_{name} holds NaN or infinite values; re-export the targets"
            )
    return targets


def check_compatible(
    targets: StyleTargets, style_layers, normalization: str, sha256: str, pooling: str = "max"
) -> None:
    """Refuses targets that cannot be compared with this run's features.

    Raises:
        ConfigError: naming what differs and how to fix it.
    """
    missing = [name for name in style_layers if name not in targets.grams]
    if missing:
        raise ConfigError(
            f"the style targets lack layers {', '.join(missing)} (they have "
            f"{', '.join(targets.grams)}); re-export them with these --style_layers"
        )
    if targets.normalization != normalization:
        raise ConfigError(
            f"the style targets use --normalization={targets.normalization}, this run "
            f"{normalization}; re-export them or match the setting"
        )
    if targets.pooling != pooling:
        raise ConfigError(
            f"the style targets were measured with --pooling={targets.pooling}, this run uses "
            f"{pooling}; re-export them or match the setting"
        )
    if targets.weights_sha256 != sha256:
        raise ConfigError(
            "the style targets were made with other VGG19 weights "
            f"(sha256 {targets.weights_sha256[:12]}..., these are {sha256[:12]}...); "
            "re-export them with these weights"
        )
