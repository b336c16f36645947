"""nst-tf-batch and the Ray it joins (issue 23): what listens at --ray_address, a cluster
in each mode the docs name, and what other Ray sessions left behind.

A cluster is started as docs/usage/batch.md says (`ray start --head` on loopback), with
its authentication on or off, inside a PID namespace of its own: there `ray stop`, which
ends every Ray process it can see, sees only that cluster's, and the namespace's end takes
any straggler with it. The driver runs outside, as a user's would.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from test_batch import (
    _batch,
    _check_exactly_once,
    _descendants,
    _end,
    _env,
    _is_loopback,
    _listening,
    _photos,
    processes,  # noqa: F401 - the subreaper fixture
)
from test_batch_safety import _state

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def _refused(tmp_path, *flags, env=None, seconds=30):
    """A batch that must end with one line, status 1, in `seconds`, writing nothing and
    leaving no process; returns the line."""
    _photos(tmp_path / "in", 1)
    before_files, before = _state(tmp_path), _descendants()
    started = time.monotonic()
    result = _batch(tmp_path / "in", tmp_path / "out", *flags, env=env, timeout=seconds + 30)
    elapsed = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("nst-tf-batch: error: "), result.stderr
    assert elapsed < seconds, elapsed
    assert _state(tmp_path) == before_files
    assert not _end(_descendants() - before)
    return lines[0]


class _Listener:
    """A plain TCP server on 127.0.0.1 that accepts and then says nothing, or `reply`."""

    def __init__(self, reply=b""):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.reply, self.connections = reply, []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)
            if self.reply:
                connection.sendall(self.reply)
                connection.close()

    def close(self):
        self.server.close()
        for connection in self.connections:
            connection.close()
        self.thread.join(5)


def test_a_silent_program_at_the_address_times_out_with_one_line(tmp_path):
    listener = _Listener()
    try:
        line = _refused(tmp_path, f"--ray_address={listener.address}", "--ray_timeout=3")
    finally:
        listener.close()
    assert line == (
        f"nst-tf-batch: error: --ray_address={listener.address}: a program listens at "
        f"{listener.address} but gave no Ray answer in 3 s (--ray_timeout); give the head's "
        "GCS port (`ray start --head --port=PORT`)"
    )
    assert listener.connections, "the batch never tried the address"


def test_a_program_that_is_not_ray_is_named_so(tmp_path):
    listener = _Listener(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        line = _refused(tmp_path, f"--ray_address={listener.address}", "--ray_timeout=3")
    finally:
        listener.close()
    assert f"{listener.address} is not a Ray cluster's GCS (unavailable: " in line


def test_auto_with_a_stale_address_file_names_the_file(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    stale = tmp_path.parent / f"{tmp_path.name}-raytmp"
    (stale / "ray").mkdir(parents=True)
    (stale / "ray" / "ray_current_cluster").write_text(dead + "\n")
    env = dict(_env(), RAY_TMPDIR=str(stale))
    line = _refused(tmp_path, "--ray_address=auto", env=env)
    address_file = stale / "ray" / "ray_current_cluster"
    assert line.startswith(
        f"nst-tf-batch: error: --ray_address=auto ({address_file} of an earlier `ray start`): "
        f"nothing answers at {dead} (Connection refused)"
    ), line
    (stale / "ray" / "ray_current_cluster").unlink()
    line = _refused(tmp_path, "--ray_address=auto", env=env)
    assert f"no {address_file} (written by `ray start --head`)" in line


# Runs in the cluster's PID namespace, as its first process: `ray start` with the arguments
# given, a line; then, once told on stdin, `ray stop` and the processes still there.
_CLUSTER = """
import json, os, subprocess, sys
start = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
print(json.dumps({"code": start.returncode, "stderr": start.stderr[-2000:]}), flush=True)
sys.stdin.readline()
stop = [sys.argv[1], "stop", "--grace-period=5"]
stop = subprocess.run(stop, capture_output=True, text=True, timeout=120)
try:
    while os.waitpid(-1, os.WNOHANG)[0]:
        pass
except ChildProcessError:
    pass
left = []
for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != os.getpid():
        with open("/proc/" + entry + "/cmdline", "rb") as f:
            left.append(f.read().replace(b"\\0", b" ").decode(errors="replace"))
print(json.dumps({"code": stop.returncode, "left": left}), flush=True)
"""


@pytest.fixture(scope="module")
def cluster(request, processes):  # noqa: F811
    """A one-machine cluster started as the docs say, in the authentication mode given
    (request.param), shared by the tests of that mode; stopped with `ray stop`, and every
    process of it checked gone."""
    mode = request.param
    temp_dir = f"/tmp/nstray-{os.getpid()}-{mode}"  # Unix socket paths are short
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = hashlib.sha256(os.urandom(16)).hexdigest()
    env = _env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE=mode)
    if mode == "token":
        env["RAY_AUTH_TOKEN"] = token
    before = _descendants()
    start = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}"]
    start += ["--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"]
    namespace = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-c"]
        + [_CLUSTER, *start, f"--temp-dir={temp_dir}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        started = json.loads(namespace.stdout.readline())
        assert started["code"] == 0, started["stderr"]
        yield {"address": f"127.0.0.1:{port}", "token": token, "before": before}
        namespace.stdin.write("\n")
        namespace.stdin.flush()
        stopped = json.loads(namespace.stdout.readline())
        assert stopped["code"] == 0 and stopped["left"] == [], stopped
        assert namespace.wait(timeout=30) == 0
    finally:
        namespace.kill()  # --kill-child: the namespace ends with it
        namespace.wait()
        assert not _end(_descendants() - before, grace=10)
        subprocess.run(["rm", "-rf", temp_dir], check=True)


@pytest.mark.parametrize("cluster", ["disabled", "token"], indirect=True)
def test_a_cluster_started_as_the_docs_say_runs_the_batch(
    cluster, tmp_path, processes  # noqa: F811
):
    photos = _photos(tmp_path / "in", 1, seed=3)
    # This machine holds a token (as any machine that ran Ray does) but the driver is not
    # told the cluster's mode: it must find it, whichever it is.
    env = _env(RAY_AUTH_TOKEN=cluster["token"])
    env.pop("RAY_AUTH_MODE", None)
    before = _state(tmp_path / "in")
    result = _batch(
        tmp_path / "in", tmp_path / "out", f"--ray_address={cluster['address']}", env=env
    )
    assert result.returncode == 0, result.stderr
    _check_exactly_once(photos, tmp_path / "out")
    assert _state(tmp_path / "in") == before
    addresses = _listening(_descendants() - cluster["before"])
    assert addresses and all(_is_loopback(address) for address in addresses), addresses


@pytest.mark.parametrize("cluster", ["token"], indirect=True)
def test_a_token_cluster_refuses_a_driver_without_its_token_in_one_line(
    cluster, tmp_path, processes  # noqa: F811
):
    address = cluster["address"]
    env = _env(RAY_AUTH_TOKEN="0" * 64)
    line = _refused(tmp_path, f"--ray_address={address}", env=env)
    assert line == (
        f"nst-tf-batch: error: --ray_address={address}: the cluster at {address} refuses this "
        "machine's Ray token; copy the head's ~/.ray/auth_token here, or set RAY_AUTH_TOKEN to it"
    )
    env = _env(HOME=str(tmp_path / "home"))  # no ~/.ray/auth_token there
    env.pop("RAY_AUTH_TOKEN", None)
    line = _refused(tmp_path, f"--ray_address={address}", env=env)
    assert "uses token authentication and this machine has no token" in line
