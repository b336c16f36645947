"""What a run compares, and how it weighs it: typed targets and the objective.

A style is described by statistics of its feature maps, per layer (`LayerStats`): the
Gram matrix for the Gatys loss, the feature mean and covariance (and the covariance's
root, for targets) for the Wasserstein loss. Computing statistics is kept apart from
taking the loss given them, so that a caller can build the generated image's statistics
some other way (for instance by summing them over tiles) and still use the same loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from nst_tf.core import losses


class LayerStats(NamedTuple):
    """Statistics of one layer's feature map that the style loss compares.

    Fields not used by the configured style loss are None. A NamedTuple, so that
    tf.function takes it as a nested structure of tensors.

    Attributes:
        gram: Gram matrix [batch, C, C] (divided by the positions with "mean"
            normalisation, or by the mask's sum for a masked region).
        mean: Feature mean [batch, C] (Wasserstein loss).
        cov: Feature covariance [batch, C, C] (Wasserstein loss).
        cov_sqrt: The covariance's square root (Wasserstein targets only).
    """

    gram: tf.Tensor | None = None
    mean: tf.Tensor | None = None
    cov: tf.Tensor | None = None
    cov_sqrt: tf.Tensor | None = None


class StyleGroup(NamedTuple):
    """One style the generated image is compared with: blended styles form one group;
    with masks, each style is a group of its own, compared over its region.

    Attributes:
        weight: Scalar float32 tensor: the group's share of the style loss.
        layers: Style layer name -> its target LayerStats.
        masks: Style layer name -> [1, h, w, 1] weights at that layer's resolution
            (where in the output the style applies), or None for everywhere.
    """

    weight: tf.Tensor
    layers: dict[str, LayerStats]
    masks: dict[str, tf.Tensor] | None = None


class TemporalTarget(NamedTuple):
    """What a video frame is held to: the previous stylised frame, warped to this one.

    Attributes:
        warped: The previous stylised frame warped along the optical flow, [1, H, W, 3].
        weights: Where the flow is reliable, [1, H, W, 1] in 0..1 (0: occluded or new).
    """

    warped: tf.Tensor
    weights: tf.Tensor


class Targets(NamedTuple):
    """Everything the objective compares the generated image with, at one scale.

    Attributes:
        content: Content layer name -> activations of the content image [batch, h, w, C].
        styles: The style groups.
        temporal: For a video frame, the warped previous frame; else None.
        style_weight: Scalar float32 tensor: the style term's weight for these targets
            (calibrated by --style_strength), or None for the objective's "style" weight.
    """

    content: dict[str, tf.Tensor]
    styles: tuple[StyleGroup, ...]
    temporal: TemporalTarget | None = None
    style_weight: tf.Tensor | None = None


class Objective:
    """The weighted sum of content, style and TV losses; weights are applied only here.

    Args:
        content_weights: Content layer name -> weight.
        style_weights: Style layer name -> weight.
        weights: Loss term -> weight: "content", "style", "tv" and, for video frames,
            "temporal".
        normalization: How the style loss is normalised ("mean" or "course").
        style_loss: "gram" or "wasserstein".
    """

    def __init__(
        self,
        *,
        content_weights: dict[str, float],
        style_weights: dict[str, float],
        weights: dict[str, float],
        normalization: str,
        style_loss: str,
    ):
        self.normalization = normalization
        self.style_loss = style_loss
        self.content_weights = dict(content_weights)
        self.style_weights = dict(style_weights)
        self.weights = {name: float(value) for name, value in weights.items()}
        temporal_weight = self.weights.get("temporal", 0.0)
        if not temporal_weight:
            self.weights.pop("temporal", None)
        temporal = ("temporal", "weighted/temporal") if temporal_weight else ()
        self.term_names = (
            ("total", "content", "style", "tv", "weighted/content", "weighted/tv")
            + temporal
            + tuple(f"style/{name}" for name in self.style_weights)
            + tuple(f"weighted/style/{name}" for name in self.style_weights)
            + ("grad_norm",)
        )

    # --- statistics -------------------------------------------------------------------

    def statistics(self, features: tf.Tensor, mask: tf.Tensor | None = None) -> LayerStats:
        """What the style loss compares, for one layer's feature map [batch, H, W, C].

        Args:
            features: The layer's activations.
            mask: Optional [1, H, W, 1] weights: the statistics of that region only.
        """
        if self.style_loss == "wasserstein":
            mean, cov = losses.feature_statistics(features)
            return LayerStats(mean=mean, cov=cov)
        return LayerStats(gram=losses.gram_matrix(features, self.normalization != "course", mask))

    def style_statistics(self, features: Mapping[str, tf.Tensor]) -> dict[str, LayerStats]:
        """LayerStats of every style layer of one image's features."""
        return {name: self.statistics(features[name]) for name in self.style_weights}

    def style_groups(
        self,
        stats: Sequence[Mapping[str, LayerStats]],
        blend: Sequence[float],
        masks: Sequence[Mapping[str, tf.Tensor]] | None = None,
    ) -> tuple[StyleGroup, ...]:
        """Turns the statistics of several style images into the groups to compare with.

        Without masks, the statistics are blended with `blend` into one group
        (jcjohnson's blending; for the Wasserstein loss the covariances are averaged and
        their root taken afterwards). With masks, each style is a group of its own that
        counts fully in its region, its blend weight scaling that.

        Args:
            stats: Per style image, LayerStats by layer.
            blend: Normalised blend weights, one per style image.
            masks: Per style image, its mask by layer, or None.
        """
        if masks:
            parts = [([s], [1.0], len(stats) * b) for s, b in zip(stats, blend, strict=True)]
        else:
            parts = [(list(stats), list(blend), 1.0)]
        groups = []
        for index, (members, weights, group_weight) in enumerate(parts):
            layers = {}
            for name in self.style_weights:
                fields = {}
                for field in LayerStats._fields:
                    values = [getattr(member[name], field) for member in members]
                    if values[0] is not None:
                        fields[field] = tf.add_n(
                            [w * v for w, v in zip(weights, values, strict=True)]
                        )
                if self.style_loss == "wasserstein":
                    fields["cov_sqrt"] = losses.sqrtm_psd(fields["cov"])
                layers[name] = LayerStats(**fields)
            group_masks = dict(masks[index]) if masks else None
            groups.append(StyleGroup(tf.constant(group_weight, tf.float32), layers, group_masks))
        return tuple(groups)

    def gram_groups(self, grams: Mapping[str, np.ndarray]) -> tuple[StyleGroup, ...]:
        """The one style group of fixed Gram matrices by layer (a style targets file)."""
        layers = {
            name: LayerStats(gram=tf.constant(grams[name], tf.float32))
            for name in self.style_weights
        }
        return (StyleGroup(tf.constant(1.0), layers),)

    def generated_statistics(
        self, features: Mapping[str, tf.Tensor], targets: Targets
    ) -> tuple[dict[str, LayerStats], ...]:
        """The generated image's LayerStats per style group (masks differ per group)."""
        shared = None
        per_group = []
        for group in targets.styles:
            if group.masks is None:
                if shared is None:
                    shared = self.style_statistics(features)
                per_group.append(shared)
            else:
                per_group.append(
                    {
                        name: self.statistics(features[name], group.masks[name])
                        for name in self.style_weights
                    }
                )
        return tuple(per_group)

    # --- losses -----------------------------------------------------------------------

    def style_layer_loss(
        self, target: LayerStats, generated: LayerStats, features_shape: tf.Tensor
    ) -> tf.Tensor:
        """One layer's style loss per image, given target and generated statistics.

        Args:
            target: The style's statistics.
            generated: The generated image's statistics.
            features_shape: The generated layer's shape [batch, H, W, C] (the course's
                normalisation divides by it).
        """
        if self.style_loss == "wasserstein":
            return losses.wasserstein_layer_loss(
                target.mean, target.cov_sqrt, target.cov, generated.mean, generated.cov
            )
        return losses.gram_loss(target.gram, generated.gram, self.normalization, features_shape)

    def terms(
        self,
        image: tf.Tensor,
        features: Mapping[str, tf.Tensor] | None,
        targets: Targets,
        generated: Sequence[Mapping[str, LayerStats]] | None = None,
        content: Mapping[str, tf.Tensor] | None = None,
        shapes: Mapping[str, tf.Tensor] | None = None,
    ) -> dict[str, tf.Tensor]:
        """Named loss terms summed over the batch; "total" is the weighted sum.

        Args:
            image: The generated image [batch, H, W, 3] (for the TV loss).
            features: Its activations by layer; None when `generated`, `content` and
                `shapes` are given (a tiled step has no whole-image features).
            targets: What to compare with.
            generated: Its style statistics per group, if already computed (default:
                computed from `features`).
            content: Each content layer's unweighted loss [batch], if already computed.
            shapes: Each layer's map shape [batch, H, W, C] (default: from `features`).
        """
        norm = self.normalization
        if generated is None:
            generated = self.generated_statistics(features, targets)
        if content is None:
            content = {
                name: losses.content_loss(targets.content[name], features[name], norm)
                for name in self.content_weights
            }
        if shapes is None:
            shapes = {name: tf.shape(features[name]) for name in self.style_weights}
        content = tf.add_n(
            [weight * content[name] for name, weight in self.content_weights.items()]
        )
        per_layer = {
            name: tf.add_n(
                [
                    group.weight
                    * self.style_layer_loss(group.layers[name], stats[name], shapes[name])
                    for group, stats in zip(targets.styles, generated, strict=True)
                ]
            )
            for name in self.style_weights
        }
        style = tf.add_n([self.style_weights[name] * loss for name, loss in per_layer.items()])
        terms = {
            "content": tf.reduce_sum(content),
            "style": tf.reduce_sum(style),
            "tv": tf.reduce_sum(losses.total_variation_loss(image, norm)),
        }
        w = dict(self.weights)
        if targets.style_weight is not None:
            w["style"] = targets.style_weight
        terms["total"] = w["content"] * terms["content"] + w["style"] * terms["style"]
        terms["total"] += w["tv"] * terms["tv"]
        terms["weighted/content"] = w["content"] * terms["content"]
        terms["weighted/tv"] = w["tv"] * terms["tv"]
        if "temporal" in w:
            temporal = targets.temporal
            terms["temporal"] = tf.reduce_sum(
                losses.temporal_loss(image, temporal.warped, temporal.weights)
            )
            terms["weighted/temporal"] = w["temporal"] * terms["temporal"]
            terms["total"] += terms["weighted/temporal"]
        for name, value in per_layer.items():
            terms[f"style/{name}"] = tf.reduce_sum(value)
            terms[f"weighted/style/{name}"] = (
                w["style"] * self.style_weights[name] * terms[f"style/{name}"]
            )
        return terms

    def content_scale(self, targets: Targets) -> tf.Tensor:
        """The content term of an image with no features (all activations zero): the
        magnitude --style_strength measures the content term by."""
        return tf.add_n(
            [
                weight
                * tf.reduce_sum(
                    losses.content_loss(
                        targets.content[name],
                        tf.zeros_like(targets.content[name]),
                        self.normalization,
                    )
                )
                for name, weight in self.content_weights.items()
            ]
        )

    def pack(self, terms: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """The terms as one float32 vector in `term_names` order: one read per step."""
        return tf.stack([tf.cast(terms[name], tf.float32) for name in self.term_names])

    def unpack(self, values: np.ndarray) -> dict[str, float]:
        """The named terms of a packed vector read back to the host."""
        return {name: float(v) for name, v in zip(self.term_names, values, strict=True)}
