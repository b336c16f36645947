"""The package's layers: imports go downwards only, no circle, and the TF-free modules stay so.

Modelled on keras-hub's import_test.py: the checks read the source (every import, also the
ones inside functions) and import the light modules in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nst_tf"

# Rank of each layer: a module may import modules of its own rank or lower, never higher.
# model.vgg19 (the network's facts) sits with errors at the bottom; the rest of model (the
# weights and the Keras extractor) beside engine and io, as in STYLE.md.
RANKS = {
    "nst_tf.errors": 0,
    "nst_tf.machine": 0,
    "nst_tf.version": 0,
    "nst_tf.model.vgg19": 0,
    "nst_tf.core": 1,
    "nst_tf.settings": 1,
    "nst_tf.model": 3,
    "nst_tf.engine": 3,
    "nst_tf.io": 3,
    "nst_tf.metrics": 3,  # scores results with model, engine and io
    "nst_tf.commands": 4,
    "nst_tf.studio": 4,  # the web studio: its jobs run nst-tf's run (commands.run)
    "nst_tf": 5,  # the public API in __init__ and __main__
}

# Modules whose import must not load TensorFlow (or Ray): the settings are checked, paths
# refused and memory planned before the slow import, and the commands' --help stays fast.
TF_FREE = (
    "nst_tf",
    "nst_tf.errors",
    "nst_tf.machine",
    "nst_tf.model.vgg19",
    "nst_tf.model.weights",
    "nst_tf.model.torch_legacy",
    "nst_tf.settings.config",
    "nst_tf.settings.presets",
    "nst_tf.core.balance",
    "nst_tf.settings.fields",
    "nst_tf.settings.recipe",
    "nst_tf.settings.files",
    "nst_tf.settings.runtime",
    "nst_tf.settings.keys",
    "nst_tf.settings.training",
    "nst_tf.io.photos",
    "nst_tf.commands.train",
    "nst_tf.core.color",
    "nst_tf.engine.memory",
    "nst_tf.engine.devices",
    "nst_tf.engine.checkpoint_files",
    "nst_tf.io.paths",
    "nst_tf.io.images",
    "nst_tf.io.inputs",
    "nst_tf.io.targets",
    "nst_tf.io.model_dir",
    "nst_tf.io.export",
    "nst_tf.commands.preflight",
    "nst_tf.commands.common",
    "nst_tf.commands.flags",
    "nst_tf.commands.stylize",
    "nst_tf.commands.video_cli",
    "nst_tf.commands.video_frames",
    "nst_tf.commands.model_video",
    "nst_tf.commands.model_run",
    "nst_tf.commands.model_batch",
    "nst_tf.engine.forward_memory",
    "nst_tf.commands.jobs",
    "nst_tf.commands.records",
    "nst_tf.commands.work",
    "nst_tf.commands.raycluster",
    "nst_tf.commands.batch",
    "nst_tf.commands.run",
    "nst_tf.commands.video",
    "nst_tf.io.clips",
    "nst_tf.settings.video",
    "nst_tf.core.flow",
    "nst_tf.commands.studio",
    "nst_tf.studio.controls",
    "nst_tf.studio.engine",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The nst_tf modules a file imports (a `from nst_tf.x import y` of a module counts y)."""
    known = _modules()
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("nst_tf")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nst_tf"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return found


def _rank(module: str) -> int:
    # The longest prefix in RANKS decides (nst_tf.model.vgg19 before nst_tf.model).
    for prefix in sorted(RANKS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return RANKS[prefix]
    raise AssertionError(f"{module} is in no layer; add its subpackage to RANKS")


def test_every_module_is_in_a_layer_and_subpackage_inits_are_empty():
    for name, path in _modules().items():
        _rank(name)
        if path.name == "__init__.py" and name != "nst_tf":
            assert path.read_text().strip() == "", f"{name}/__init__.py must stay empty"


def test_imports_go_downwards_only():
    upward = [
        f"{name} (layer {_rank(name)}) imports {target} (layer {_rank(target)})"
        for name, path in _modules().items()
        for target in _imports(path)
        if _rank(target) > _rank(name)
    ]
    assert not upward, "\n".join(upward)


def test_core_takes_values_not_settings():
    for name, path in _modules().items():
        if name.startswith("nst_tf.core"):
            assert not {t for t in _imports(path) if t.startswith("nst_tf.settings")}, name


def test_no_import_circle():
    graph = {
        name: {t for t in _imports(path, top_level_only=True) if t in _modules() and t != name}
        for name, path in _modules().items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_the_check_sees_an_upward_import(tmp_path):
    # The walker is what the other tests rely on: a core module importing a command is found.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from nst_tf.commands import stylize\n")
    assert "nst_tf.commands.stylize" in _imports(bad)
    assert _rank("nst_tf.commands.stylize") > _rank("nst_tf.core.losses")


@pytest.mark.parametrize("module", TF_FREE)
def test_light_modules_import_without_tensorflow(module):
    code = (
        f"import sys, {module}\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'ray') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "", f"{module} imports {done.stdout.strip()}"


# The modules outside nst_tf.settings that see a whole Config (docs/index.md, architecture):
# the public API, the flags and the one pre-flight that build and check it, the
# Stylizer's constructor, the studio that builds it from the page, and the commands'
# bodies that take a run's settings whole and hand them to a Stylizer. Every other module
# gets a part (Recipe, InputFiles, OutputFiles, Runtime) or the values it uses.
CONFIG_IMPORTERS = {
    "nst_tf",
    "nst_tf.commands.flags",
    "nst_tf.commands.preflight",
    "nst_tf.engine.stylizer",
    "nst_tf.studio.engine",
    "nst_tf.commands.run",  # nst-tf (the studio's jobs too)
    "nst_tf.commands.model_run",  # nst-tf --model (a refinement's Stylizer)
    "nst_tf.commands.video",  # nst-tf-video
    "nst_tf.commands.model_video",  # nst-tf-video --model (a refinement's Stylizer)
    "nst_tf.commands.batch",  # nst-tf-batch
    "nst_tf.commands.model_batch",  # nst-tf-batch --model
    "nst_tf.commands.jobs",  # a batch's Job, which carries the settings to its workers
}
CONFIG_MODULE = "nst_tf.settings.config"


def _imports_config(path: Path) -> bool:
    """Whether a file imports the name Config from nst_tf.settings.config, in any form:
    `from nst_tf.settings.config import Config` (or *), or the module bound to a name
    (`import nst_tf.settings.config as c`, `from nst_tf.settings import config`) whose
    `.Config` the file reads."""
    tree = ast.parse(path.read_text())
    bound = set()  # names the module is bound to, as dotted text
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == CONFIG_MODULE:
            if any(alias.name in ("Config", "*") for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom) and node.module == "nst_tf.settings":
            bound |= {alias.asname or alias.name for alias in node.names if alias.name == "config"}
        elif isinstance(node, ast.Import):
            bound |= {
                alias.asname or alias.name for alias in node.names if alias.name == CONFIG_MODULE
            }
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "Config":
            if ast.unparse(node.value) in bound:
                return True
    return False


def test_only_the_builders_of_a_config_import_it():
    importers = {
        name
        for name, path in _modules().items()
        if not name.startswith("nst_tf.settings") and _imports_config(path)
    }
    assert importers == CONFIG_IMPORTERS, (
        f"new: {sorted(importers - CONFIG_IMPORTERS)}, gone: {sorted(CONFIG_IMPORTERS - importers)}"
        " -- give the new module the part or the values it reads, not the whole Config"
    )


@pytest.mark.parametrize(
    "source, imports",
    [
        ("from nst_tf.settings.config import Config\n", True),
        ("from nst_tf.settings.config import Config as Settings\n", True),
        ("from nst_tf.settings.config import *\n", True),
        ("def f():\n    from nst_tf.settings.config import RECIPE, Config\n", True),
        ("import nst_tf.settings.config as c\nc.Config()\n", True),
        ("import nst_tf.settings.config\nnst_tf.settings.config.Config()\n", True),
        ("from nst_tf.settings import config\nx = config.Config\n", True),
        ("from nst_tf.settings import config as s\ns.split_list('a')\n", False),
        ("from nst_tf.settings.config import validate\n", False),
        ("from nst_tf.errors import ConfigError\n", False),
    ],
)
def test_the_config_check_sees_every_import_form(tmp_path, source, imports):
    path = tmp_path / "module.py"
    path.write_text(source)
    assert _imports_config(path) is imports
