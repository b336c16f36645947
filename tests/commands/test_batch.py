"""nst-tf-batch: the job logic, and real runs on Ray with the real network (tiny photos).

Ray runs in subprocesses, on loopback only. This process becomes a child subreaper
while a Ray test runs, so every process a test starts (Ray daemonises its own) stays
in this process's tree: the tests find them there, check they are gone, and end any
that remain by their ids. `ray stop`, which ends every Ray process it can see, is run only
inside a PID namespace of its own (tests/commands/test_batch_ray.py).
"""

import collections
import ctypes
import hashlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from nst_tf.commands import jobs, records, work
from nst_tf.settings.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A network cut at block2 and Adam (L-BFGS compiles more per shape) keep each run short;
# the result-changing flags of nst-tf.
SETTINGS = [
    "--size=64",
    "--min_size=0",
    "--steps=3",
    "--optimizer=adam",
    "--content_layers=block2_conv1",
    "--style_layers=block1_conv1,block2_conv1",
    "--precision=float32",
    "--xla=off",
]


# --- the job logic, without an engine -------------------------------------------------------


def _short_hash(path):
    return hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:8]


def test_output_names_keep_colliding_inputs_apart(tmp_path):
    paths = [
        str(tmp_path / "a" / "x.jpg"),
        str(tmp_path / "b" / "x.png"),
        str(tmp_path / "b" / "X.tif"),
        str(tmp_path / "y.error.png"),
        str(tmp_path / "y.png"),
        str(tmp_path / "z.png"),
    ]
    names = jobs.output_names(paths)
    assert names == [
        f"x-{_short_hash(paths[0])}",
        f"x-{_short_hash(paths[1])}",
        f"X-{_short_hash(paths[2])}",
        f"y.error-{_short_hash(paths[3])}",  # y's NAME.error.json would be its sidecar
        f"y-{_short_hash(paths[4])}",
        "z",
    ]


def test_inputs_from_a_folder_a_list_and_a_glob(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("b.jpg", "a.png", "sub/c.png", ".hidden.png"):
        (photos / name).write_bytes(b"")
    (photos / "notes.txt").write_text("not a photo")
    (photos / "sub" / "a.json").write_text("{}")
    assert jobs.list_inputs(str(photos)) == [str(photos / "a.png"), str(photos / "b.jpg")]
    listing = tmp_path / "list.txt"
    listing.write_text("# mine\nphotos/sub/c.png\n\nphotos/a.png\nphotos/a.png\n")
    assert jobs.list_inputs(str(listing)) == [str(photos / "sub/c.png"), str(photos / "a.png")]
    assert jobs.list_inputs(str(photos / "**" / "*.png")) == [
        str(photos / "a.png"),
        str(photos / "sub/c.png"),
    ]
    # A pattern lists what a folder would: image files, not notes or records.
    assert jobs.list_inputs(str(photos / "**")) == [
        str(photos / "a.png"),
        str(photos / "b.jpg"),
        str(photos / "sub/c.png"),
    ]
    with pytest.raises(jobs.ConfigError, match="names no images"):
        jobs.list_inputs(str(tmp_path / "nothing*.png"))


def test_the_key_follows_what_changes_the_result(tmp_path):
    style = tmp_path / "style.png"
    Image.new("RGB", (32, 32), (10, 20, 30)).save(style)
    base = Config(style=str(style))

    def digest(config, fmt="png", weights="w"):
        return jobs.job_digest(config, fmt, weights)

    reference = digest(base)
    assert digest(Config(style=str(style), log_every=1, logdir="runs")) == reference
    assert digest(Config(style=str(style), style_weight=2e-3)) != reference
    assert digest(base, fmt="jpg") != reference
    assert digest(base, weights="other") != reference
    assert digest(Config(style=str(style), bit_depth=16)) != reference  # another file
    Image.new("RGB", (32, 32), (10, 20, 31)).save(style)  # same name, other pixels
    assert digest(base) != reference
    assert jobs.photo_key("d", "a") != jobs.photo_key("d", "b")


def test_the_queue_gives_a_worker_the_shapes_it_has_compiled():
    def photo(name, shape):
        return jobs.Photo(name, name, "", "", shape)

    wide, tall = (48, 64), (64, 48)
    queue = jobs.Queue(
        [photo("a", wide), photo("b", tall), photo("c", wide), photo("d", tall), photo("e", None)]
    )
    first, second = set(), set()
    assert queue.take(first).name == "a"  # the largest group first
    assert queue.take(second).name == "b"  # a shape nobody has compiled
    assert queue.take(first).name == "c" and queue.take(second).name == "d"
    assert first == {wide} and second == {tall}
    assert queue.take(first).name == "e" and len(queue) == 0
    assert queue.take(second) is None


def test_measured_style_gives_the_same_result_as_the_style_images():
    import pickle

    from nst_tf.engine.stylizer import Stylizer
    from nst_tf.model.features import FeatureExtractor

    config = Config(
        size=48,
        min_size=32,
        steps=2,
        coarse_steps=2,
        content_layers=("block1_conv2",),
        style_layers=("block1_conv1", "block1_conv2"),
        style_blend_weights=(0.3, 0.7),
        style="a,b",
        optimizer="adam",
        precision="float32",
        xla="off",
    )
    stylizer = Stylizer(config, FeatureExtractor(config.layers, vgg_weights=None))
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 255, (40, 48, 3)).astype(np.float32)
    styles = [rng.uniform(0, 255, shape).astype(np.float32) for shape in ((30, 50, 3), (50, 30, 3))]
    measured = pickle.loads(pickle.dumps(stylizer.measure_style(styles)))
    assert measured.sizes == (32, 48)
    np.testing.assert_array_equal(
        stylizer.stylize(content, measured), stylizer.stylize(content, styles)
    )


def test_a_photo_too_large_for_the_memory_given_fails_and_is_retried_later(tmp_path):
    (path,) = _photos(tmp_path / "in", 1)
    config = Config(size=64)
    job = jobs.Job(config, str(tmp_path), memory_bytes=1e6)
    (photo,) = jobs.plan(job, [str(path)], "digest")
    # No stylizer is needed: the photo is refused before any work.
    outcome = work.stylize_photo(None, job, photo, style=None)
    assert not outcome.ok and "--memory_per_worker" in outcome.error
    record = json.loads((tmp_path / "photo0.error.json").read_text())
    assert record["error"] == outcome.error and record["final"] is False
    assert records.failed_before(job, photo) is None  # a rerun with more memory tries again
    assert not (tmp_path / "photo0.png").exists() and not (tmp_path / "photo0.json").exists()


def test_the_default_pool_gives_each_worker_two_cpus_and_fills_the_machine():
    from nst_tf.commands.raypool import pool_size

    class Cluster:
        def __init__(self, cpus, memory=64e9):
            self.resources = {"CPU": float(cpus), "memory": memory}

        def cluster_resources(self):
            return self.resources

    assert pool_size(Cluster(2), None, None, 1e9, 100) == (1, 2)
    assert pool_size(Cluster(16), None, None, 1e9, 100) == (8, 2)
    assert pool_size(Cluster(16), None, None, 1e9, 3) == (3, 2)  # no idle workers
    assert pool_size(Cluster(1), None, None, 1e9, 100) == (1, 1)
    assert pool_size(Cluster(2), 2, 1, 1e9, 100) == (2, 1)
    assert pool_size(Cluster(2), 2, None, 1e9, 100) == (2, 1)  # --workers alone: shared out
    assert pool_size(Cluster(16), 4, None, 1e9, 100) == (4, 2)
    with pytest.raises(jobs.ConfigError, match="need 4 CPUs; the cluster has 2"):
        pool_size(Cluster(2), 2, 2, 1e9, 100)
    with pytest.raises(jobs.ConfigError, match="need 3 CPUs; the cluster has 2"):
        pool_size(Cluster(2), 3, None, 1e9, 100)
    with pytest.raises(jobs.ConfigError, match="need more memory"):
        pool_size(Cluster(16, memory=8e9), None, None, 2e9, 100)


# --- processes --------------------------------------------------------------------------------


def _processes():
    """(pid, state, parent) of every process on the machine."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            yield int(entry), fields[0], int(fields[1])


def _descendants():
    """Live processes under this one, zombies excluded."""
    children = collections.defaultdict(list)
    for pid, state, parent in _processes():
        if state != "Z":
            children[parent].append(pid)
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children[todo.pop()]:
            found.add(child)
            todo.append(child)
    return found


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _listening(pids):
    """The addresses that processes `pids` listen on (TCP), as ipaddress objects."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    found = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/net/{table}") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        for row in rows:
            if row[3] == "0A" and row[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(row[1].split(":")[0])
                # /proc prints each 32-bit word in host (little-endian) order.
                words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
                found.append(ipaddress.ip_address(b"".join(words)))
    return found


def _is_loopback(address):
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _reap():
    """Collects the exit status of orphans that Ray processes left to this subreaper."""
    for pid, state, parent in list(_processes()):
        if parent == os.getpid() and state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _wait_gone(pids, seconds):
    """Waits up to `seconds` for `pids` to end; returns those still there."""
    deadline = time.monotonic() + seconds
    while True:
        _reap()
        left = pids & _descendants()
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def _end(pids, grace=0.0):
    """Gives `pids` `grace` seconds to exit, then ends those left by id; returns them."""
    left = _wait_gone(pids, grace)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not _wait_gone(left, 10)
    return left


@pytest.fixture(scope="module")
def processes():
    """Makes this process a child subreaper for the module; at the end, ends by id every
    process the tests started that is still there."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    before = _descendants()
    yield before
    _end(_descendants() - before)
    libc.prctl(36, 0, 0, 0, 0)


# --- real runs --------------------------------------------------------------------------------


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env.pop("RAY_ADDRESS", None)
    return env


def _command(inputs, output_dir, *flags):
    return [
        sys.executable,
        "-m",
        "nst_tf.commands.batch",
        f"--inputs={inputs}",
        f"--output_dir={output_dir}",
        *SETTINGS,
        *flags,
    ]


def _start(inputs, output_dir, *flags):
    """Starts a batch; returns it and the set of processes that were there before."""
    before = _descendants()
    process = subprocess.Popen(
        _command(inputs, output_dir, *flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    return process, before


def _batch(inputs, output_dir, *flags, env=None, timeout=300):
    return subprocess.run(
        _command(inputs, output_dir, *flags),
        capture_output=True,
        text=True,
        env=env or _env(),
        timeout=timeout,
    )


def _photos(directory, count, seed=0):
    """`count` small photos of two shapes (landscape and portrait) with smooth content."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        height, width = (48, 64) if index % 2 else (64, 48)
        yy, xx = np.mgrid[0:height, 0:width]
        phase = rng.uniform(0, 6, 3)
        pixels = 127 + 120 * np.sin(xx[..., None] / 7 + yy[..., None] / 11 + phase)
        Image.fromarray(pixels.astype(np.uint8)).save(directory / f"photo{index}.png")
    return sorted(directory.glob("photo*.png"))


def _outputs(output_dir):
    return sorted(p.name for p in output_dir.iterdir())


def _check_exactly_once(photos, output_dir):
    """One output and one sidecar per photo, sidecars that vouch for the photo's bytes."""
    names = _outputs(output_dir)
    assert [n for n in names if n.endswith(".png")] == sorted(f"{p.stem}.png" for p in photos)
    sidecars = [n for n in names if n.endswith(".json") and not n.endswith(".error.json")]
    assert sidecars == sorted(f"{p.stem}.json" for p in photos)
    assert not [n for n in names if n.startswith(".")]  # no temporary files
    records = {}
    for photo in photos:
        record = json.loads((output_dir / f"{photo.stem}.json").read_text())
        assert record["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
        assert record["input"] == str(photo) and record["steps"] == 3
        with Image.open(output_dir / f"{photo.stem}.png") as image:
            assert image.size == Image.open(photo).size  # 64 px on the long side
            assert np.asarray(image).std() > 5
        records[photo.stem] = record
    return records


def _srgb():
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


_SRGB = _srgb()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, processes):
    """5 photos and a corrupt file through 2 workers of an embedded Ray, watching the
    addresses Ray listens on while it runs."""
    root = tmp_path_factory.mktemp("batch")
    photos = _photos(root / "in", 5)
    # One photo carries a print's ICC profile and DPI, as a camera's or scanner's does.
    with Image.open(photos[0]) as image:
        image.load()
    image.save(photos[0], icc_profile=_SRGB, dpi=(240, 240))
    (root / "in" / "broken.png").write_bytes(Image.new("RGB", (8, 8)).tobytes()[:40])
    output_dir = root / "out"
    started = time.monotonic()
    process, before = _start(
        root / "in", output_dir, "--workers=2", "--cpus_per_worker=1", f"--logdir={root / 'logs'}"
    )
    addresses, ray_pids = set(), set()
    while process.poll() is None:
        pids = _descendants() - before
        ray_pids |= pids
        addresses |= set(_listening(pids))
        time.sleep(0.3)
    stdout, stderr = process.communicate()
    seconds = time.monotonic() - started
    left = _wait_gone(ray_pids, 15)
    return {
        "root": root,
        "photos": photos,
        "output_dir": output_dir,
        "returncode": process.returncode,
        "stderr": stderr,
        "addresses": addresses,
        "left": {pid: _cmdline(pid) for pid in left},
        "seconds": seconds,
    }


def test_each_photo_is_stylised_exactly_once_by_two_workers(first_run):
    run = first_run
    photos = run["photos"]
    records = _check_exactly_once(photos, run["output_dir"])
    assert "done 5, skipped 0" in run["stderr"], run["stderr"]
    # Both workers worked, each loaded the network once and traced once per shape:
    # two shapes (64x48, 48x64) among the photos.
    workers = {record["pid"] for record in records.values()}
    assert len(workers) == 2
    assert max(record["traces"] for record in records.values()) <= 2
    # One TensorBoard run per photo under --logdir.
    runs = sorted(path.name for path in (run["root"] / "logs").iterdir())
    assert runs == [photo.stem for photo in photos]
    assert all(list((run["root"] / "logs" / name).glob("events.out.tfevents.*")) for name in runs)


def test_a_result_carries_its_photos_icc_profile_and_dpi_as_nst_tf_writes_them(first_run):
    photos, output_dir = first_run["photos"], first_run["output_dir"]
    with Image.open(output_dir / f"{photos[0].stem}.png") as image:
        assert image.info.get("icc_profile") == _SRGB
        assert tuple(round(d) for d in image.info["dpi"]) == (240, 240)
    with Image.open(output_dir / f"{photos[1].stem}.png") as image:
        assert "icc_profile" not in image.info and "dpi" not in image.info


def test_a_corrupt_photo_gets_its_error_record_and_exit_status_1(first_run):
    run = first_run
    assert run["returncode"] == 1
    record = json.loads((run["output_dir"] / "broken.error.json").read_text())
    assert "broken.png" in record["error"] and "\n" not in record["error"]
    assert record["final"] is True
    assert not (run["output_dir"] / "broken.png").exists()
    assert "failed broken:" in run["stderr"]
    assert "Traceback" not in run["stderr"]


def test_ray_listens_on_loopback_only_and_leaves_no_process(first_run):
    addresses = first_run["addresses"]
    assert addresses, "no listening socket of Ray was seen"
    assert all(_is_loopback(address) for address in addresses), addresses
    assert first_run["left"] == {}


def test_a_rerun_stylises_nothing(first_run):
    output_dir = first_run["output_dir"]
    stamps = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}
    rerun = _batch(first_run["root"] / "in", output_dir, "--workers=2", "--cpus_per_worker=1")
    assert rerun.returncode == 1  # the corrupt photo still fails, recorded by the first run
    assert "done 0, skipped 5" in rerun.stderr and "failed 1" in rerun.stderr
    assert {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()} == stamps


def test_the_sidecar_key_is_the_documented_hash_and_other_settings_redo(first_run):
    from nst_tf.model.weights import find_weights

    # The run's settings as a Config (flags take their defaults from it; --steps given on
    # the command line fixes the schedule).
    config = Config(
        size=64,
        min_size=0,
        steps=3,
        schedule="fixed",
        optimizer="adam",
        content_layers=("block2_conv1",),
        style_layers=("block1_conv1", "block2_conv1"),
        precision="float32",
        xla="off",
    )
    output_dir = str(first_run["output_dir"])
    job = jobs.Job(config, output_dir)
    sha = find_weights(None).sha256
    photos = jobs.plan(
        job, [str(p) for p in first_run["photos"]], jobs.job_digest(config, "png", sha)
    )
    for photo in photos:
        record = json.loads((first_run["output_dir"] / f"{photo.name}.json").read_text())
        digest = hashlib.sha256(
            f"{jobs.job_digest(config, 'png', sha)}:{record['sha256']}".encode()
        ).hexdigest()
        assert record["key"] == digest == photo.key
        assert records.is_done(job, photo)
    changed = Config(**{**config.to_dict(), "style_weight": 2e-3})
    digest = jobs.job_digest(changed, "png", sha)
    redo = jobs.plan(jobs.Job(changed, output_dir), [p.path for p in photos], digest)
    assert not any(records.is_done(job, photo) for photo in redo)


def _finished(output_dir):
    """The photos whose sidecar vouches for a whole result: a pending sidecar (written
    before its image) or a photo being written does not count."""
    found = {}
    for path in output_dir.glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        output = output_dir / f"{path.stem}.png"
        if not path.name.endswith(".error.json") and record.get("key") and output.exists():
            found[path.stem] = (path.stat().st_mtime_ns, output.stat().st_mtime_ns)
    return found


def test_driver_killed_then_rerun_finishes_every_photo_once(tmp_path, processes):
    photos = _photos(tmp_path / "in", 4, seed=1)
    output_dir = tmp_path / "out"
    process, before = _start(tmp_path / "in", output_dir, "--workers=1")
    deadline = time.monotonic() + 240
    while not _finished(output_dir) and time.monotonic() < deadline:
        assert process.poll() is None, "the batch ended before it could be killed"
        time.sleep(0.05)
    process.kill()  # SIGKILL: no clean-up of any kind
    process.communicate()
    # Every process of the session ends with the driver, Ray's agents too (the watchdog).
    # Only then are the finished photos counted: a worker may finish one more before.
    left = _wait_gone(_descendants() - before, 5)
    assert not left, {pid: _cmdline(pid) for pid in left}
    finished = _finished(output_dir)
    assert 1 <= len(finished) < 4, finished
    # What a writer of ours killed mid-file leaves behind, and the temporary file of an
    # nst-tf run writing into the same folder, which is not ours to remove.
    (output_dir / ".nst_tf-batch-0123456789abcdef.part").write_bytes(b"half an image")
    theirs = output_dir / ".nst_tf-fedcba9876543210.part"
    theirs.write_bytes(b"another program's half image")
    stamp = theirs.stat().st_mtime_ns
    rerun = _batch(tmp_path / "in", output_dir, "--workers=1")
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped {len(finished)}" in rerun.stderr
    assert "1 temporary files of a killed run removed" in rerun.stderr
    # The photos done before were not redone: their result and sidecar are untouched.
    assert {name: _finished(output_dir)[name] for name in finished} == finished
    assert theirs.read_bytes() == b"another program's half image"
    assert theirs.stat().st_mtime_ns == stamp
    theirs.unlink()
    _check_exactly_once(photos, output_dir)


def test_a_worker_killed_mid_photo_is_restarted_and_the_photo_retried(tmp_path, processes):
    photos = _photos(tmp_path / "in", 2, seed=2)
    output_dir = tmp_path / "out"
    process, before = _start(tmp_path / "in", output_dir, "--workers=1")
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and process.poll() is None and time.monotonic() < deadline:
        for pid in _descendants() - before:
            # Ray titles an actor's process by the method it is running.
            if _cmdline(pid).startswith("ray::BatchWorker.run"):
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=300)
    assert killed is not None, "the worker was never seen running a photo"
    assert process.returncode == 0, stderr
    records = _check_exactly_once(photos, output_dir)
    assert killed not in {record["pid"] for record in records.values()}


# --- mistakes ---------------------------------------------------------------------------------


def _refused(tmp_path, *flags, inputs=None, output_dir=None, code=1):
    inputs = inputs or tmp_path / "in"
    output_dir = output_dir or tmp_path / "out"
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nst_tf.commands.batch",
            f"--inputs={inputs}",
            f"--output_dir={output_dir}",
        ]
        + list(flags),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("nst-tf-batch: ")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written
    return lines[0]


def test_mistakes_get_one_line_and_nothing_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "names no images" in _refused(tmp_path, inputs=tmp_path / "empty")
    _photos(tmp_path / "in", 1)
    (tmp_path / "file").write_text("x")
    assert "is a file" in _refused(tmp_path, output_dir=tmp_path / "file")
    assert "is a file" in _refused(tmp_path, output_dir=tmp_path / "file" / "out")
    assert "is a system folder" in _refused(tmp_path, output_dir="/proc/nst_tf_out")
    assert "nothing answers" in _refused(tmp_path, "--ray_address=127.0.0.1:1")
    assert "--workers must be at least 1" in _refused(tmp_path, "--workers=0")
    assert "not a batch flag" in _refused(tmp_path, "--content=a.png")
    assert "holds the input" in _refused(tmp_path, output_dir=tmp_path / "in")
    _refused(tmp_path, "--workers=two", code=2)
    _refused(tmp_path, "--format=gif", code=2)


def test_without_ray_one_line_says_how_to_install_it(tmp_path):
    _photos(tmp_path / "in", 1)
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ImportError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv[0] = 'nst-tf-batch'\n"
        "from nst_tf.commands.batch import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker, f"--inputs={tmp_path / 'in'}", f"--output_dir={tmp_path}/o"]
        + SETTINGS,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "nst-tf-batch: error: nst-tf-batch needs Ray: pip install 'nst_tf[ray]' "
        "(or pip install 'ray>=2.60')"
    ]
    assert not (tmp_path / "o").exists()
