"""Command line `nst-tf-studio`: the web studio on this machine (see docs/usage/studio.md).

It listens on 127.0.0.1 unless --host says otherwise; beyond the loopback interface it
asks for a token (one is made and printed when --token is not given). Everything it
receives and writes stays in its own work folder, removed when it stops. Ctrl-C (or
SIGTERM) stops the run in progress at a step boundary, closes the server and removes the
work folder, and says so in one line.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import socket
import sys
import threading

from absl import flags, logging

from nst_tf.commands import common
from nst_tf.errors import ConfigError, NstError
from nst_tf.io.paths import shown

FLAGS = flags.FLAGS

_FLAGS = (
    ("port", 7860, "Port to listen on; 0 picks a free one (printed at start)."),
    ("host", "127.0.0.1", "Address to listen on; anything beyond loopback needs --token."),
    (
        "token",
        "",
        "Password of the page and the API (user name: studio); default: none on "
        "loopback, a new random one (printed) on any other --host.",
    ),
    (
        "work_dir",
        "",
        "Where the studio makes its own work folder (uploads, runs, results; "
        "removed on exit); default: the system's temporary folder.",
    ),
    ("max_upload_mb", 200, "Largest upload accepted, in MB."),
    (
        "results_dir",
        "",
        "A folder where every result (finished or stopped, with its flag file) is also "
        "kept, so none is lost when the studio stops; default: none.",
    ),
    (
        "models",
        "",
        "Trained stylizers to offer for instant results: MODEL_DIRs, or folders of "
        "them, comma-separated; default: none.",
    ),
)
# The user name that goes with --token (Gradio's login asks for a name and a password).
USER = "studio"


def _define_flags() -> tuple[str, ...]:
    for name, default, help_text in _FLAGS:
        if isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text)
        else:
            flags.DEFINE_string(name, default, help_text)
    return tuple(name for name, *_ in _FLAGS)


def is_loopback(host: str) -> bool:
    """Whether an address (or host name) only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str) -> int:
    """A port nothing listens on at `host` now (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _check_flags() -> str | None:
    """The token to ask for (None: none), after checking the flags."""
    if not 0 <= FLAGS.port <= 65535:
        raise ConfigError(f"--port={FLAGS.port} is not a port; use 1..65535, or 0 for a free one")
    if FLAGS.max_upload_mb <= 0:
        raise ConfigError(f"--max_upload_mb must be positive, got {FLAGS.max_upload_mb}")
    if FLAGS.token:
        return FLAGS.token
    if is_loopback(FLAGS.host):
        return None
    token = secrets.token_urlsafe(16)
    sys.stdout.write(
        f"nst-tf-studio: --host={FLAGS.host} reaches beyond this machine: log in as "
        f"'{USER}' with the token {token}\n"
    )
    return token


class _Stop:
    """Records SIGINT/SIGTERM for the main thread, which then shuts the studio down."""

    def __init__(self):
        self.signum = None
        self.event = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        del frame
        if self.signum is not None:  # the second Ctrl-C: leave at once
            raise KeyboardInterrupt
        self.signum = signum
        self.event.set()


def _serve() -> int:
    token = _check_flags()
    # The engine's folder first: Gradio reads its cache folder from the environment.
    from nst_tf.studio.engine import Studio, WorkFolder, find_models  # pylint: disable=C0415

    if FLAGS.results_dir:
        from nst_tf.io.paths import check_writable_directory  # pylint: disable=C0415

        check_writable_directory(FLAGS.results_dir, "results_dir")
        os.makedirs(FLAGS.results_dir, exist_ok=True)
    models = find_models([entry.strip() for entry in FLAGS.models.split(",") if entry.strip()])
    work = WorkFolder(FLAGS.work_dir or None)
    stop = _Stop()
    os.environ["GRADIO_TEMP_DIR"] = work.cache
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # A closed page is noticed within a few seconds (Gradio's default: 15 s).
    os.environ.setdefault("GRADIO_HEARTBEAT_INTERVAL", "2")
    studio = Studio(work, models=models, results_dir=FLAGS.results_dir or None)
    demo = None
    try:
        from nst_tf.studio import app  # pylint: disable=C0415

        demo = app.build(studio)
        port = FLAGS.port or free_port(FLAGS.host)
        try:
            demo.launch(
                server_name=FLAGS.host,
                server_port=port,
                prevent_thread_lock=True,
                quiet=True,
                show_error=True,
                ssr_mode=False,
                pwa=False,
                mcp_server=False,
                enable_monitoring=False,
                max_file_size=FLAGS.max_upload_mb * 1024 * 1024,
                allowed_paths=[work.jobs],
                auth=(USER, token) if token else None,
                theme=app.THEME,
                css=app.CSS,
            )
        except OSError as err:
            raise ConfigError(f"cannot listen on {FLAGS.host}:{port} ({err})") from None
        shown_host = f"[{FLAGS.host}]" if ":" in FLAGS.host else FLAGS.host
        sys.stdout.write(
            f"nst-tf-studio: http://{shown_host}:{port}/ (pid {os.getpid()}, work folder "
            f"{work.path}); Ctrl-C stops it\n"
        )
        sys.stdout.flush()
        stop.event.wait()
        running = studio.running()
        stopped = studio.close(f"the studio was stopped by {signal.Signals(stop.signum).name}")
        name = signal.Signals(stop.signum).name
        if FLAGS.results_dir:
            where = f"kept in {shown(FLAGS.results_dir)}"
        else:
            where = "removed with the work folder (--results_dir keeps them)"
        if running is not None:
            line = (
                f"stopped by {name} during job {running.id} at step {running.step}/"
                f"{running.total}; its image so far and the session's other results were {where}"
            )
        else:
            queued = f" ({len(stopped)} queued job(s) not run)" if stopped else ""
            count = len(studio.history())
            line = f"stopped by {name}{queued}; the session's {count} result(s) were {where}"
        sys.stderr.write(f"nst-tf-studio: {line}\n")
        return 128 + stop.signum
    finally:
        if demo is not None:
            demo.close()
        work.remove()


def _studio_main(argv: list[str]) -> int:
    if len(argv) > 1:
        return common.unexpected_arguments(argv)
    common.setup_logging()
    try:
        return _serve()
    except NstError as err:
        return common.fail(str(err), 1)
    except KeyboardInterrupt:
        return common.fail("stopped at once; the work folder was removed", 130)


def main() -> None:
    """Entry point of `nst-tf-studio`."""
    names = _define_flags()
    logging.set_verbosity(logging.INFO)
    common.run(_studio_main, names)
