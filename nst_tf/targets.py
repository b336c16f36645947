"""Style targets as a file: a style's Gram matrices, computed once, reused by many runs.

The file is a plain .npz (read with allow_pickle=False: data only) holding, per layer,
`gram_<layer>`, plus the layer names, the size the style was measured at, the
normalisation and the sha256 of the VGG19 weights. A run refuses a file made with other
weights, layers or normalisation, since its Gram matrices would not be comparable.
"""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np

from nst_tf.errors import ConfigError
from nst_tf.images import atomic_write


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


def load_style_targets(path: str) -> StyleTargets:
    """Reads a targets file written by `nst-tf-export --targets_out`.

    Raises:
        ConfigError: the file is missing, not a targets file, or malformed.
    """
    try:
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
    except FileNotFoundError:
        raise ConfigError(f"--style_targets={path}: no such file; check the path") from None
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        raise ConfigError(
            f"--style_targets={path} is not a style targets file; "
            "make one with nst-tf-export --style=IMG --targets_out=FILE.npz"
        ) from None
    for name, gram in targets.grams.items():
        if gram.ndim != 3 or gram.shape[1] != gram.shape[2]:
            raise ConfigError(f"--style_targets={path}: gram_{name} is not a Gram matrix")
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
