"""Issue 4, item 6: property-based tests of nst_tf.settings.config.validate.

Any Config, whatever its values (wrong types, NaN, infinities, negative numbers, random layer
names and lists, paths with NUL bytes or lone surrogates), either validates or raises
ConfigError with a one-line message; and every Config made of documented-good values validates.

The strategies are derived from the dataclass fields and their annotations, so a field added to
Config later is covered by the random test without editing this file.
"""

import dataclasses
import math
import numbers
import os
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nst_tf.errors import ConfigError
from nst_tf.settings.config import (
    INIT_KEYWORDS,
    NORMALIZATIONS,
    OPTIMIZERS,
    PRECISIONS,
    VGG19_CONV_LAYERS,
    XLA_MODES,
    Config,
    InputFiles,
    Recipe,
    Runtime,
    default_settings,
    joined,
    setting_fields,
    validate,
)

FIELDS = {field.name: field for field in dataclasses.fields(Config)}
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- random values of every kind --------------------------------------------------------------

KEYWORDS = (*OPTIMIZERS, *NORMALIZATIONS, *PRECISIONS, *XLA_MODES, *INIT_KEYWORDS, "download", "")
any_text = st.one_of(
    st.text(max_size=20),
    # Lone surrogates and NUL cannot be encoded as a file name.
    st.text(st.characters(blacklist_categories=()), max_size=10),
    st.sampled_from(KEYWORDS),
    st.sampled_from(VGG19_CONV_LAYERS),
    st.sampled_from(["in\0.png", "\ud800.png", "\udcff.png", ".", "/", "\n"]),
)
any_number = st.one_of(
    st.integers(),
    st.integers(-3, 3),
    st.sampled_from([0, 1, 16384, 16385, 2**63, -(2**63)]),
    st.floats(),  # includes nan, inf, -inf, -0.0, subnormals
    st.sampled_from([math.nan, math.inf, -math.inf, -1e-300]),
    st.booleans(),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
)
any_scalar = st.one_of(st.none(), any_number, any_text, st.builds(pathlib.Path, st.text()))
layer_name = st.one_of(st.sampled_from(VGG19_CONV_LAYERS), any_text)
any_sequence = st.one_of(
    st.lists(layer_name, max_size=6),
    st.lists(any_scalar, max_size=6),
    st.lists(st.sampled_from(VGG19_CONV_LAYERS), min_size=1, max_size=5, unique=True),
    st.tuples(),
    any_text,  # a bare string is iterable too: the characters become the items
)


def random_value(annotation: str) -> st.SearchStrategy:
    """Mostly values of the annotated type, sometimes a value of any other type."""
    if annotation.startswith("tuple"):
        # Config.__post_init__ turns these into tuples, so they must be iterable.
        if "float" in annotation:
            return st.one_of(st.lists(any_number, max_size=6), any_sequence)
        return any_sequence
    typed = {
        "int": st.one_of(st.integers(), st.integers(-3, 3), st.sampled_from([16384, 16385])),
        "float": any_number,
        "bool": st.booleans(),
        "str": any_text,
        "str | None": st.one_of(st.none(), any_text),
    }.get(annotation, any_scalar)
    return st.one_of(typed, typed, any_scalar)


@st.composite
def random_configs(draw):
    values = {name: draw(random_value(field.type), label=name) for name, field in FIELDS.items()}
    return Config(**values)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_weight(value) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0


def assert_documented_constraints(config: Config) -> None:
    """What a validated config promises the rest of the program (README's flag table)."""
    assert _is_int(config.size) and 0 < config.size
    for name in ("min_size", "snapshot_every", "log_every", "checkpoint_every"):
        if name not in FIELDS:
            continue
        assert _is_int(getattr(config, name)) and getattr(config, name) >= 0, name
    for name in ("steps", "coarse_steps", "lbfgs_memory"):
        assert _is_int(getattr(config, name)) and getattr(config, name) > 0, name
    assert config.optimizer in OPTIMIZERS
    assert config.normalization in NORMALIZATIONS
    assert config.precision in PRECISIONS
    assert isinstance(config.learning_rate, numbers.Real)
    assert math.isfinite(config.learning_rate) and config.learning_rate > 0
    assert isinstance(config.adam_beta1, numbers.Real) and 0 <= config.adam_beta1 < 1
    assert isinstance(config.adam_beta2, numbers.Real) and 0 <= config.adam_beta2 < 1
    for name in ("content_weight", "style_weight", "tv_weight"):
        assert _is_weight(getattr(config, name)), name
    for layers in (config.content_layers, config.style_layers):
        assert layers and set(layers) <= set(VGG19_CONV_LAYERS)
        assert len(set(layers)) == len(layers)
    assert all(_is_weight(w) for w in config.style_layer_weights)
    assert len(config.style_layer_weights) in (0, len(config.style_layers))
    assert config.output
    assert _is_int(config.seed)
    for name in ("content", "style", "output", "init", "logdir", "vgg_weights", "checkpoint_dir"):
        value = getattr(config, name, None)
        if value is not None:  # a name the file system accepts
            assert isinstance(value, str | os.PathLike), name
            assert b"\0" not in os.fsencode(value), name


# --- documented-good values -------------------------------------------------------------------

file_name = st.text("abcdefghijklmnopqrstuvwxyzé写 _-", min_size=1, max_size=12)
finite_weight = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
layer_lists = st.lists(st.sampled_from(VGG19_CONV_LAYERS), min_size=1, max_size=8, unique=True)


@st.composite
def good_configs(draw):
    style_layers = draw(layer_lists)
    deterministic = draw(st.booleans())
    layer_weights = draw(
        st.one_of(
            st.just(()),
            st.lists(finite_weight, min_size=len(style_layers), max_size=len(style_layers)),
        )
    )
    # Inputs and output live in different folders, so the output is never an input.
    input_path = st.builds(lambda name: f"inputs/{name}.jpg", file_name)
    good = {
        "content": draw(st.one_of(st.none(), input_path)),
        "style": draw(st.one_of(st.none(), input_path)),
        "output": draw(
            st.builds(lambda n, e: f"outputs/{n}{e}", file_name, st.sampled_from([".png", ".jpg"]))
        ),
        "size": draw(st.integers(1, 16384)),
        "min_size": draw(st.integers(0, 20000)),
        "steps": draw(st.integers(1, 10**6)),
        "coarse_steps": draw(st.integers(1, 10**6)),
        "lbfgs_memory": draw(st.integers(1, 1000)),
        "optimizer": draw(st.sampled_from(OPTIMIZERS)),
        "learning_rate": draw(
            st.floats(min_value=0, exclude_min=True, allow_nan=False, allow_infinity=False)
        ),
        "adam_beta1": draw(st.floats(min_value=0, max_value=1, exclude_max=True)),
        "adam_beta2": draw(st.floats(min_value=0, max_value=1, exclude_max=True)),
        "content_weight": draw(finite_weight),
        "style_weight": draw(finite_weight),
        "tv_weight": draw(finite_weight),
        "content_layers": draw(layer_lists),
        "style_layers": style_layers,
        "style_layer_weights": layer_weights,
        "normalization": draw(st.sampled_from(NORMALIZATIONS)),
        "init": draw(st.one_of(st.sampled_from(INIT_KEYWORDS), input_path)),
        "seed": draw(st.integers()),
        "precision": draw(st.sampled_from(PRECISIONS)),
        "logdir": draw(st.one_of(st.none(), file_name)),
        "snapshot_every": draw(st.integers(0, 10**6)),
        "log_every": draw(st.integers(0, 10**6)),
        "vgg_weights": draw(st.one_of(st.none(), st.just("download"), file_name)),
        "checkpoint_every": draw(st.integers(0, 10**6)),
        "checkpoint_dir": draw(st.one_of(st.none(), file_name)),
        "resume": draw(st.booleans()),
        "deterministic": deterministic,
        # XLA has no deterministic max-pool gradient: "on" is refused with determinism.
        "xla": draw(st.sampled_from(("auto", "off") if deterministic else XLA_MODES)),
    }
    # Fields this file does not know yet keep their defaults.
    return Config(**{name: value for name, value in good.items() if name in FIELDS})


@st.composite
def perturbed_configs(draw):
    """A good config with a few settings replaced by random values: reaches every check."""
    config = draw(good_configs())
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=2, unique=True))
    changes = {name: draw(random_value(FIELDS[name].type), label=name) for name in names}
    return dataclasses.replace(config, **changes)


@SETTINGS
@given(st.one_of(random_configs(), perturbed_configs(), perturbed_configs()))
def test_any_config_validates_or_raises_config_error(config):
    try:
        result = validate(config)
    except ConfigError as err:
        message = str(err)
        assert message and "\n" not in message, f"not one line: {message!r}"
        event("refused")
        return
    event("validated")
    assert result is config
    assert_documented_constraints(config)


@SETTINGS
@given(good_configs())
def test_good_configs_validate(config):
    assert validate(config) is config
    assert_documented_constraints(config)


@pytest.mark.parametrize(
    "name, value",
    [
        ("size", np.int64(256)),
        ("steps", np.int32(3)),
        ("style_weight", np.float32(0.5)),
        ("content", pathlib.Path("inputs/photo.jpg")),
        ("style", pathlib.Path("inputs/painting.jpg")),
        ("style", pathlib.Path("")),
    ],
)
def test_numpy_numbers_and_paths_from_notebooks_are_accepted(name, value):
    assert validate(Config(**{name: value})).__dict__[name] == value


def test_a_style_path_object_is_one_entry():
    assert Config(style=pathlib.Path("inputs/painting.jpg")).style_paths() == [
        os.path.join("inputs", "painting.jpg")
    ]


def test_the_default_config_validates():
    assert validate(Config()) == Config()


BAD_VALUES = {
    "size": [0, -1, "512", 512.5, True, None, math.nan],
    "min_size": [-1, "0", 1.5],
    "steps": [0, -3, 2.0, False, "100"],
    "coarse_steps": [0, None],
    "lbfgs_memory": [0, -5, 2.5, "50", None, True],
    "seed": [1.5, "0", None],
    "learning_rate": [0, -2.0, math.nan, math.inf, "2", None],
    "adam_beta1": [1, 1.5, -0.1, math.nan, "0.9"],
    "adam_beta2": [1, -0.5, math.inf, math.nan, "0.999"],
    "content_weight": [-1, math.nan, math.inf, -math.inf, "1", None],
    "style_weight": [-1e-3, math.nan, np.float32("nan")],
    "tv_weight": [-0.1, math.inf],
    "content_layers": [
        [],
        ["block9_conv1"],
        ["conv4_2"],
        ["block4_conv2"] * 2,
        [None],
        "block4_conv2,block9_conv1",
    ],
    "style_layers": [[], ["block1_conv1", "relu1_1"], [1, 2]],
    "style_layer_weights": [[1.0], [math.nan] * 5, [1, 1, -1, 1, 1], ["1"] * 5, [None] * 5],
    # A string with a newline (found by the property test) must not split the message.
    "content_layer_weights": [["0\n0"], [-1.0]],
    "style_scale": [["1\n2"], [0.0], [9.0]],
    "optimizer": ["sgd", "", None, 0],
    "normalization": ["max", None],
    "precision": ["float16", None],
    "snapshot_every": [-1, 0.5],
    "log_every": [-1, "10"],
    "checkpoint_every": [-1, None],
    "output": ["", None, 0, "out\0.png", "\ud800.png"],
    "content": ["in\0.jpg", "\ud800.jpg", 7],
    "style": ["in\0.jpg", b"style.jpg"],
    "init": [None, "in\0.png", 3],
    "logdir": ["runs\0", 1],
    "vgg_weights": ["w\0.h5", 1],
    "checkpoint_dir": ["ck\0pt", 1.0],
}


@pytest.mark.parametrize(
    "name, value",
    [(name, value) for name, values in BAD_VALUES.items() for value in values if name in FIELDS],
    ids=repr,
)
def test_each_bad_value_alone_is_refused(name, value):
    config = Config(**{name: value})
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert "\n" not in str(err.value)


def test_comma_separated_layer_strings_are_accepted():
    config = validate(
        Config(content_layers="block4_conv2", style_layers="block1_conv1, block2_conv1")
    )
    assert config.content_layers == ("block4_conv2",)
    assert config.style_layers == ("block1_conv1", "block2_conv1")


def test_init_style_with_style_targets_is_refused_for_every_command():
    """A targets file holds statistics, not a picture to start from: refused in the
    settings' own check, before any file is read (nst-tf, batch and video alike)."""
    with pytest.raises(ConfigError, match="^--init=style needs a style image"):
        validate(Config(init="style", style_targets="targets.npz"))
    validate(Config(init="style"))  # with a style image it is fine


def test_the_settings_fields_and_defaults_are_configs():
    # The helpers that let a module walk the settings without holding the Config class.
    assert setting_fields() == dataclasses.fields(Config)
    assert [f.name for f in setting_fields()][:3] == ["size", "min_size", "steps"]
    assert setting_fields()[-1].name == "memory_limit"
    assert default_settings() == dataclasses.asdict(Config())
    assert default_settings()["style_scale"] == (1.0,)


def test_joined_takes_each_parts_own_settings():
    run = Config(size=64, vgg_weights="weights.h5", logdir="logs", precision="float32")
    assert joined(run, run, run, run) == run
    # A Config handed in as the recipe gives only its recipe: the rest are defaults.
    assert joined(run) == Config(size=64)
    made = joined(Recipe(size=32), InputFiles(vgg_weights="w.h5"), runtime=Runtime(xla="off"))
    assert made == Config(size=32, vgg_weights="w.h5", xla="off")
    assert isinstance(made, Config)
