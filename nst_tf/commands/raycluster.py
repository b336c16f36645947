"""Starting or joining Ray for nst-tf-batch, bounded and on loopback by default.

Loopback. On Linux, Ray 2.60 replaces 127.0.0.1 (given as the node address) by the
machine's own address and listens on every interface, as a cluster node must. Its
single-machine mode, the default on macOS and Windows and chosen on Linux by the
environment variable RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 set before Ray is imported,
keeps the node address at 127.0.0.1, and every Ray process (GCS, raylet, agents,
workers) then binds 127.0.0.1 only. An embedded Ray, and a driver that joins a cluster
on a loopback address, use it; a driver joining a cluster at another address does not,
since the cluster's other machines must reach it.

Authentication. Ray 2.60 clusters run with token authentication or without it, and a
driver must run in the cluster's mode: a driver in token mode refuses the cluster's own
calls to it when the cluster has none (every actor then "never ran - it was cancelled"),
and one without a token is refused by a cluster that wants one. So before Ray is
imported, the driver asks the cluster's GCS one gRPC question (probe_cluster): answered
without a token, the cluster has no authentication; refused as unauthenticated, it wants
the token this machine holds (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token),
which is tried next. RAY_AUTH_MODE is then set to what the cluster does. The same question
bounds the wait: a program on that port that is not Ray, or says nothing, is named in one
line after --ray_timeout seconds, before Ray's C++ client would retry it for minutes.

The embedded Ray is started with address "local" in a temporary folder of its own, so
that nothing another Ray session left (the address file /tmp/ray/ray_current_cluster that
`ray start` writes, RAY_ADDRESS, session folders, a /tmp/ray of another user) is joined or
read. Its processes share the driver's fate: a watchdog, started first, notes the
driver's descendants until the driver closes a pipe (or dies, SIGKILL included), then
ends those left and removes the folder. Without it, Ray's agents outlive a killed driver
by a minute (each waits 60 s to report the raylet's death to a GCS that died with it).
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

from nst_tf.errors import ConfigError

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# The style statistics, masks and start image are all the object store holds.
OBJECT_STORE_BYTES = 256 * 2**20


def import_ray(address: str, auth_mode: str | None = None):
    """Imports Ray configured for `address` (see the module docstring).

    Args:
        address: "" (embedded) or the cluster's HOST:PORT.
        auth_mode: The cluster's authentication ("token" or "disabled"; see
            probe_cluster); None for the embedded Ray.

    Raises:
        ConfigError: Ray is not installed.
    """
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if not address or _is_loopback(address):
        os.environ[LOOPBACK_ENV] = "0"
    if auth_mode:
        os.environ["RAY_AUTH_MODE"] = auth_mode
    try:
        import ray  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise _no_ray() from None
    return ray


def _no_ray() -> ConfigError:
    return ConfigError(
        "nst-tf-batch needs Ray: pip install 'nst_tf[ray]' (or pip install 'ray>=2.60')"
    )


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0]
    return host == "localhost" or host.startswith("127.")


def _token() -> str | None:
    """This machine's Ray token, where Ray looks for it; None without one."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(4096).strip() or None
    except (OSError, UnicodeError):
        return None


def address_file() -> str:
    """Where `ray start` writes the address of the cluster it started (Ray's own rule)."""
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(base, "ray", "ray_current_cluster")


def resolve_address(address: str) -> tuple[str, str]:
    """The HOST:PORT that --ray_address means, and where it came from (for messages).

    'auto' is RAY_ADDRESS, else the address that the last `ray start` on this machine
    wrote (address_file()).

    Raises:
        ConfigError: 'auto' finds no cluster, or the address is not HOST:PORT.
    """
    origin = f"--ray_address={address}"
    if address == "auto":
        if os.environ.get("RAY_ADDRESS"):
            address, origin = os.environ["RAY_ADDRESS"], "--ray_address=auto (RAY_ADDRESS)"
        else:
            try:
                with open(address_file(), encoding="utf-8") as f:
                    address = f.read(1024).strip()
            except (OSError, UnicodeError):
                raise ConfigError(
                    "--ray_address=auto finds no cluster: RAY_ADDRESS is unset and no "
                    f"{address_file()} (written by `ray start --head`); start one or give "
                    "HOST:PORT"
                ) from None
            origin = f"--ray_address=auto ({address_file()} of an earlier `ray start`)"
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{origin}: {address!r} is not HOST:PORT, 'auto' or empty")
    return address, origin


def probe_cluster(address: str, origin: str, timeout: float) -> str:
    """Asks the GCS at `address` one question, to learn its authentication mode.

    Args:
        address: HOST:PORT of the cluster's head (its GCS port).
        origin: How the address was given, for messages.
        timeout: Seconds to wait for each answer.

    Returns:
        "disabled" or "token": what the cluster runs with (and this driver must).

    Raises:
        ConfigError: nothing listens there, it is not a Ray GCS (no answer in time, or
            not gRPC), or it wants a token this machine does not have.
    """
    try:
        import grpc  # pylint: disable=import-outside-toplevel  (installed with Ray)
    except ImportError:
        raise _no_ray() from None
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=min(5.0, timeout)):
            pass
    except OSError as err:
        raise ConfigError(
            f"{origin}: nothing answers at {address} ({err.strerror or err}); "
            "start the cluster with `ray start --head` or fix the address"
        ) from None
    with grpc.insecure_channel(address) as channel:
        # GetClusterId: the first call every Ray client makes; its request is empty.
        ask = channel.unary_unary(
            "/ray.rpc.NodeInfoGcsService/GetClusterId",
            request_serializer=bytes,
            response_deserializer=bytes,
        )

        def status(metadata=None):
            try:
                ask(b"", timeout=timeout, metadata=metadata)
            except grpc.RpcError as err:
                return err.code(), _one_line_text(err.details() or "")
            return grpc.StatusCode.OK, ""

        code, details = status()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            token = _token()
            if not token:
                raise ConfigError(
                    f"{origin}: the cluster at {address} uses token authentication and this "
                    "machine has no token: copy the head's ~/.ray/auth_token here, or set "
                    "RAY_AUTH_TOKEN (`ray get-auth-token` on the head prints it)"
                )
            code, details = status((("authorization", f"Bearer {token}"),))
            if code == grpc.StatusCode.OK:
                return "token"
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise ConfigError(
                    f"{origin}: the cluster at {address} refuses this machine's Ray token; "
                    "copy the head's ~/.ray/auth_token here, or set RAY_AUTH_TOKEN to it"
                )
    if code == grpc.StatusCode.OK:
        return "disabled"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise ConfigError(
            f"{origin}: a program listens at {address} but gave no Ray answer in "
            f"{timeout:g} s (--ray_timeout); give the head's GCS port "
            "(`ray start --head --port=PORT`)"
        )
    raise ConfigError(
        f"{origin}: {address} is not a Ray cluster's GCS ({code.name.lower()}: {details}); "
        "give the head's GCS port (`ray start --head --port=PORT`)"
    )


# The watchdog of an embedded session (see the module docstring). Twice a second until the
# driver closes its stdin or dies, it notes the driver's descendants that are Ray's (a
# "ray::" title, or a program of the ray package) and started after the watchdog did (pid
# and start time); then it ends those still there. So a program that calls run_batch keeps
# its own children. Ctrl-C and a closed terminal reach the driver's whole process group:
# the watchdog outlives them to clean up.
_WATCHDOG = """
import os, select, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
folder, ray_dir = sys.argv[1:]
driver, me = os.getppid(), os.getpid()

def processes():
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/" + entry + "/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(entry)] = (int(fields[1]), int(fields[19]))  # parent, start time
    return found

def is_ray(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            command = f.read().decode(errors="replace")
    except OSError:
        return False
    return command.startswith("ray::") or ray_dir in command

def session(table):
    children = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {}, [driver]
    while todo:
        for child in children.get(todo.pop(), ()):
            todo.append(child)
            if child != me and table[child][1] >= born and is_ray(child):
                found[child] = table[child][1]
    return found

born = processes()[me][1]
known = {}
while not select.select([sys.stdin], [], [], 0.5)[0]:
    known.update(session(processes()))
for _ in range(2):
    table = processes()
    for pid, start in known.items():
        if pid in table and table[pid][1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    time.sleep(0.2)
shutil.rmtree(folder, ignore_errors=True)
"""


@contextlib.contextmanager
def _embedded_session(ray_dir: str):
    """A temporary folder for an embedded Ray session, and its watchdog; yields the folder.
    At the end, the watchdog ends what is left of the session and removes the folder.

    Args:
        ray_dir: The ray package's folder, which the programs of Ray's processes name.
    """
    # Short: Ray's Unix socket paths under it must stay below 108 bytes.
    folder = tempfile.mkdtemp(prefix="nst_tf-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
    watchdog = None
    if os.path.isdir("/proc"):  # Linux; elsewhere Ray's own fate-sharing is all there is
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, folder, ray_dir],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        yield folder
    finally:
        if watchdog is not None:
            watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def connect(address: str, timeout: float = 30.0):
    """Starts an embedded Ray on 127.0.0.1 (address empty) or joins a cluster, for the
    block; Ray is shut down (and the embedded Ray's folder removed) when it ends.

    Args:
        address: "", "auto" or HOST:PORT (--ray_address).
        timeout: Seconds to wait for a cluster's answer (--ray_timeout).

    Yields:
        The ray module, initialised.

    Raises:
        ConfigError: Ray is missing, or the cluster cannot be reached or joined.
    """
    options = {"logging_level": std_logging.ERROR, "log_to_driver": False}
    with contextlib.ExitStack() as stack:
        if address:
            address, origin = resolve_address(address)
            ray = import_ray(address, probe_cluster(address, origin, timeout))
            options["address"] = address
        else:
            origin = "the embedded Ray"
            ray = import_ray(address)
            options.update(
                address="local",
                _temp_dir=stack.enter_context(_embedded_session(os.path.dirname(ray.__file__))),
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                object_store_memory=OBJECT_STORE_BYTES,
            )
        # ray.init makes SIGTERM call sys.exit; the caller's handler is put back after it.
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(**options)
        except Exception as err:  # noqa: BLE001 - Ray raises many kinds; all mean "cannot join"
            raise ConfigError(f"{origin}: cannot start or join Ray ({one_line(err)})") from None
        finally:
            if threading.current_thread() is threading.main_thread() and sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        try:
            yield ray
        finally:
            ray.shutdown()


def one_line(err: BaseException) -> str:
    """An exception's message as one line (Ray's are many)."""
    return _one_line_text(str(err)) or type(err).__name__


def _one_line_text(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
