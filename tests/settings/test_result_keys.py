"""One result key for resume, batch and video: the recipe, the inputs' bytes, the weights."""

import hashlib
import json

import numpy as np
import pytest
from conftest import LAYERS

from nst_tf.errors import ConfigError
from nst_tf.settings import keys
from nst_tf.settings.config import Config

RNG = np.random.default_rng(5)


def test_the_key_is_the_sha256_of_the_canonical_record():
    record = keys.key_record({"size": 64}, {"content": "ab" * 32}, "cd" * 32, format="png")
    text = json.dumps(record, sort_keys=True)
    assert keys.result_key(record) == hashlib.sha256(text.encode()).hexdigest()
    assert record["content bytes"] == "ab" * 32 and record["key_format"] == keys.KEY_FORMAT


def test_the_recipe_leaves_out_only_what_never_changes_the_pixels():
    recipe = keys.recipe_of(Config(size=64, tile_size="96", memory_limit=2.0, resume=True))
    assert recipe["size"] == 64 and recipe["precision"] == "auto"
    assert not {"tile_size", "memory_limit", "resume", "output", "content"} & set(recipe)
    a, b = (keys.recipe_of(Config(tile_size=t)) for t in ("auto", "96"))
    assert a == b
    assert keys.recipe_of(Config(style_weight=1.0)) != keys.recipe_of(Config())


def test_array_digest_is_of_dtype_shape_and_bytes():
    image = RNG.uniform(0, 255, (4, 5, 3)).astype(np.float32)
    expected = hashlib.sha256(f"{image.dtype.str}{image.shape}".encode() + image.tobytes())
    assert keys.array_sha256(image) == expected.hexdigest()
    assert keys.array_sha256(image.reshape(5, 4, 3)) != keys.array_sha256(image)


def test_changes_name_each_entry_and_shorten_digests():
    old = keys.key_record({"style_weight": 0.001}, {"content": "a" * 64}, "w" * 64)
    new = keys.key_record({"style_weight": 1.0}, {"content": "b" * 64}, "w" * 64)
    assert keys.changes(old, old) == ""
    assert keys.changes(old, new) == (
        "content bytes: 'aaaaaaaaaaaa...' -> 'bbbbbbbbbbbb...', style_weight: 0.001 -> 1.0"
    )


def _stylize(model, tmp_path, content, resume=False, **changes):
    from nst_tf.engine.stylizer import Stylizer

    config = Config(
        size=32,
        min_size=0,
        steps=4,
        checkpoint_every=2,
        checkpoint_dir=str(tmp_path / "ckpt"),
        resume=resume,
        **LAYERS,
        **changes,
    )
    return Stylizer(config, model).stylize(content, np.full((20, 20, 3), 30.0, np.float32))


def test_resume_refuses_other_content_pixels_and_older_checkpoints(model, tmp_path):
    import tensorflow as tf

    from nst_tf.engine import checkpoints

    content = np.full((24, 32, 3), 100.0, np.float32)
    _stylize(model, tmp_path, content)
    other = content.copy()
    other[0, 0, 0] = 101.0  # one value of one pixel
    digests = r"\['[0-9a-f]{12}\.\.\.'\]"
    with pytest.raises(
        ConfigError, match=rf"other settings \(content bytes: {digests} -> {digests}\);"
    ):
        _stylize(model, tmp_path, other, resume=True)
    # A checkpoint whose settings predate key records (recipe and input paths as JSON).
    old = tmp_path / "old"
    checkpoints.clear(str(old))  # an nst_tf checkpoint folder (its marker written)
    state = checkpoints.RunState(json.dumps({"size": 32, "content": "a.jpg"}), 0)
    tf.train.CheckpointManager(state.checkpoint(), str(old), max_to_keep=1).save(1)
    with pytest.raises(ConfigError, match="written by an older nst_tf"):
        checkpoints.begin({"key_format": keys.KEY_FORMAT}, 0, str(old), resume=True)
