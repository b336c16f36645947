"""nst-tf-export --describe reads an export's nst_tf.json as data: without TensorFlow, and
never loading (so never running) the SavedModel beside it, whoever made it."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
DESCRIBE = [sys.executable, "-c", "from nst_tf.commands.export import main; main()"]
DESCRIPTION = {"producer": "nst_tf 0.0", "layers": ["block4_conv2"], "pooling": "max"}


@pytest.fixture(name="no_tensorflow")
def _no_tensorflow(tmp_path_factory):
    """A PYTHONPATH whose first entry holds `tensorflow` and `keras` packages that fail on
    import: a command that imports either fails instead of quietly working."""
    blocker = tmp_path_factory.mktemp("blocker")
    for name in ("tensorflow", "keras"):
        (blocker / name).mkdir()
        (blocker / name / "__init__.py").write_text(
            f"raise ImportError('{name} was imported', name='{name}')\n"
        )
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), ROOT]))


def _export(tmp_path, description=DESCRIPTION):
    """A SavedModel directory from elsewhere: a saved_model.pb nst_tf must never load."""
    export = tmp_path / "export"
    (export / "variables").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"\x08\x01 a graph that must not run")
    if description is not None:
        (export / "nst_tf.json").write_text(json.dumps(description))
    return export


def _state(folder):
    return {
        path: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_fifo()
    }


def _describe(export, env, timeout=60):
    return subprocess.run(
        [*DESCRIBE, f"--describe={export}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_the_blocker_blocks_tensorflow(no_tensorflow):
    # The check the other tests lean on: with this PYTHONPATH, importing TensorFlow fails.
    result = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], capture_output=True, env=no_tensorflow
    )
    assert result.returncode != 0 and b"tensorflow was imported" in result.stderr


def test_describe_prints_the_description_without_tensorflow(tmp_path, no_tensorflow):
    export = _export(tmp_path)
    before = _state(export)
    result = _describe(export, no_tensorflow)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == DESCRIPTION
    assert _state(export) == before


def _fifo(export):
    os.mkfifo(export / "nst_tf.json")


def _zero(export):
    os.symlink("/dev/zero", export / "nst_tf.json")


def _huge(export):
    (export / "nst_tf.json").write_text('{"a": "' + "x" * (2 << 20) + '"}')


def _deep(export):
    (export / "nst_tf.json").write_text("[" * 100000 + "]" * 100000)


def _list(export):
    (export / "nst_tf.json").write_text("[1, 2, 3]")


@pytest.mark.parametrize(
    "case, make, expected",
    [
        ("no description", None, "without an nst_tf.json"),
        ("fifo", _fifo, "FIFO"),
        ("device", _zero, "nst_tf.json"),
        ("huge", _huge, "not an nst_tf description"),
        ("deeply nested", _deep, "not an nst_tf description"),
        ("not an object", _list, "not an nst_tf description"),
    ],
)
def test_a_foreign_export_gives_one_line_and_is_never_loaded(
    tmp_path, no_tensorflow, case, make, expected
):
    export = _export(tmp_path, description=None)
    if make is not None:
        make(export)
    before = _state(export)
    result = _describe(export, no_tensorflow)  # a FIFO or /dev/zero would hang or never end
    assert result.returncode == 1, (case, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and expected in lines[0], (case, lines)
    assert result.stdout == ""
    assert _state(export) == before
