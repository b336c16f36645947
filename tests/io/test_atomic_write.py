"""Issue 4, item 4: an image being written is never seen half-written, even under SIGKILL.

A child process saves different 1000x1000 PNGs to one path in a loop with
nst_tf.io.images.save_image; the test kills it with SIGKILL at random moments, many times, and
after each kill the file must be absent (nothing written yet) or one whole image the child
wrote, never an older one than the last write the child reported complete. Temporary
.nst_tf-*.part files may remain after a SIGKILL (nothing can clean up then); they are counted,
which shows the kills did land in the middle of writes.
"""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

KILLS = 30
# Kills land up to this many write-times after the child is ready: long enough for some
# writes to complete, short enough that many kills hit a write, on a fast or slow machine.
MAX_DELAY_WRITES = 3.0
SIDE = 1000

# Shared by the child, which draws the images, and the test, which redraws them to compare.
# The seed is stamped into the first pixels so a file says which image it should be.
MAKE_IMAGE = f"""
def make_image(seed):
    image = np.random.default_rng(seed).integers(0, 256, ({SIDE}, {SIDE}, 3), dtype=np.uint8)
    image[0, :8, 0] = np.frombuffer(seed.to_bytes(8, "little"), dtype=np.uint8)
    return image
"""
namespace = {"np": np}
exec(MAKE_IMAGE, namespace)  # our own constant source, shared with the child
make_image = namespace["make_image"]

CHILD = f"""
import os
import sys
import time
import numpy as np
from nst_tf.io.images import save_image
{MAKE_IMAGE}
path, seed = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
save_image(make_image(seed), path + ".warmup.png")  # times one write on this machine
os.unlink(path + ".warmup.png")
print("ready", time.perf_counter() - start, flush=True)
while True:
    save_image(make_image(seed), path)
    print(seed, flush=True)
    seed += 1
"""


def seed_of(path) -> int:
    """Opens and fully decodes the PNG at `path`; checks it is exactly one image the child drew."""
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (SIDE, SIDE)
        img.load()  # raises on truncated or corrupt data
        pixels = np.asarray(img.convert("RGB"))
    seed = int.from_bytes(pixels[0, :8, 0].tobytes(), "little")
    assert np.array_equal(pixels, make_image(seed)), f"file mixes images (seed {seed})"
    return seed


def test_sigkill_never_leaves_a_truncated_output(tmp_path):
    rng = random.Random(4)
    target = tmp_path / "out.png"
    kills = mid_write = writes = 0
    newest_complete = -1  # seed of the last write a child reported finished
    started = time.perf_counter()
    for round_ in range(KILLS):
        base = round_ * 1_000_000
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(target), str(base)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        try:
            ready, write_seconds = child.stdout.readline().split() or ["", ""]
            assert ready == "ready", child.stderr.read()
            time.sleep(rng.uniform(0, MAX_DELAY_WRITES * float(write_seconds)))
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL, child.stderr.read()
        kills += 1
        reported = [int(line) for line in child.stdout.read().split()]
        child.stdout.close()
        child.stderr.close()
        writes += len(reported)
        if reported:
            newest_complete = reported[-1]

        leftovers = [name for name in os.listdir(tmp_path) if name != "out.png"]
        assert all(name.startswith(".nst_tf-") and name.endswith(".part") for name in leftovers)
        mid_write += bool(leftovers)
        for name in leftovers:  # the dead child's; no writer is running now
            os.unlink(tmp_path / name)

        if not target.exists():
            assert newest_complete < 0, f"kill {kills}: the output vanished after a write"
            continue
        seed = seed_of(target)
        # The file is the newest complete write, or the one renamed just before the kill.
        assert seed >= newest_complete, f"kill {kills}: an older image came back"
        assert seed < base + 1_000_000
        newest_complete = seed

    seconds = time.perf_counter() - started
    print(
        f"{kills} SIGKILLs in {seconds:.1f} s: {mid_write} landed mid-write, "
        f"{writes} writes reported complete; the output was whole after every kill"
    )
    assert kills == KILLS
    assert mid_write > 0, "no kill interrupted a write: the test proved nothing"
    assert writes > 0 and target.exists(), "no write ever completed"
