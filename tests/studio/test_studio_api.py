"""nst-tf-studio without a browser: its API through gradio_client and plain HTTP, and
Ctrl-C during a run (one line, the work folder removed, no process left)."""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.studio_server import Server, inputs, wait_for

SETTINGS = {"size": 48, "min_size": 0, "steps": 20, "optimizer": "adam"}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small trained stylizer (seeded random weights: the studio's plumbing is the point)."""
    import keras

    from nst_tf.io.model_dir import write_model_dir
    from nst_tf.model.transform import TransformNet

    keras.utils.set_random_seed(3)
    net = TransformNet(width=4, residual_blocks=1)
    net(np.zeros((1, 16, 16, 3), np.float32))
    path = tmp_path_factory.mktemp("models") / "tiny"
    write_model_dir(
        str(path),
        net,
        recipe={"style_weight": 1e-3},
        styles=[{"name": "style.png", "sha256": "ab" * 32}],
        training={"steps": 1},
    )
    return path


@pytest.fixture(scope="module")
def studio(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("studio_api")
    server = Server(tmp, f"--models={model.parent}", f"--results_dir={tmp / 'kept'}")
    server.kept = tmp / "kept"
    yield server
    if server.process.poll() is None:
        server.end(signal.SIGTERM)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return inputs(tmp_path_factory.mktemp("user_files"))


@pytest.fixture(scope="module")
def client(studio):
    return Client(studio.url, verbose=False, download_files=str(studio.parent.parent / "got"))


def test_a_job_through_the_client(client, files):
    content, style, style2 = files
    job = client.submit(
        handle_file(str(content)),
        [handle_file(str(style)), handle_file(str(style2))],
        json.dumps({**SETTINGS, "style_blend_weights": "3,1"}),
        api_name="/stylize",
    )
    path, info = job.result(timeout=240)
    assert info["state"] == "done" and info["step"] == info["total"] == 20, info
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (48, 36)
        assert np.asarray(image).std() > 1
    listed = client.predict(api_name="/jobs")
    assert [entry["job"] for entry in listed if entry["state"] == "done"][:1] == [info["job"]]
    assert "--style_blend_weights=3.0,1.0" in _flag_file(client, info)


def _flag_file(client: Client, info: dict) -> str:
    """The flag file of a job, as the page offers it: fetched from the studio."""
    url = f"{client.src.rstrip('/')}/gradio_api/file={info['files']['flags']}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def test_a_trained_model_gives_its_result_at_once(client, files, model):
    from nst_tf.engine.feedforward import stylize_with_model
    from nst_tf.io.images import load_image
    from nst_tf.io.model_dir import load_model_dir

    content = files[0]
    path, info = client.predict(
        handle_file(str(content)),
        [],
        json.dumps({"model": "tiny", "size": 40}),
        api_name="/stylize",
    )
    assert info["state"] == "done", info
    with Image.open(path) as image:
        assert image.size == (40, 30)
        got = np.asarray(image, np.float32)
    net, _ = load_model_dir(str(model))
    expected = stylize_with_model(net, load_image(str(content), size=40))
    assert np.abs(got - np.clip(np.round(expected), 0, 255)).max() <= 1.0
    with pytest.raises(AppError, match="there is no trained model 'other' here; offered: tiny"):
        client.predict(
            handle_file(str(content)), [], json.dumps({"model": "other"}), api_name="/stylize"
        )


def test_bad_settings_are_one_line_errors(client, files):
    content, style, _ = files
    with pytest.raises(AppError, match="size must be a number, got 'big'"):
        client.predict(
            handle_file(str(content)),
            [handle_file(str(style))],
            json.dumps({"size": "big"}),
            api_name="/stylize",
        )
    with pytest.raises(AppError, match="'colour' is not a setting the studio takes"):
        client.predict(
            handle_file(str(content)),
            [handle_file(str(style))],
            json.dumps({"colour": 1}),
            api_name="/stylize",
        )


def _post(url: str, body: bytes, content_type: str) -> dict:
    request = urllib.request.Request(url, body, {"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_job_through_plain_http(studio, files):
    # What docs/usage/studio.md shows with curl: upload, call, read the event stream.
    content, style, _ = files
    boundary = uuid.uuid4().hex
    parts = b""
    for path in (content, style):
        parts += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{path.name}"\r\nContent-Type: image/png\r\n\r\n'
            ).encode()
            + path.read_bytes()
            + b"\r\n"
        )
    parts += f"--{boundary}--\r\n".encode()
    uploaded = _post(
        f"{studio.url}/gradio_api/upload", parts, f"multipart/form-data; boundary={boundary}"
    )
    file_data = [{"path": path, "meta": {"_type": "gradio.FileData"}} for path in uploaded]
    body = {"data": [file_data[0], [file_data[1]], json.dumps(SETTINGS)]}
    event = _post(
        f"{studio.url}/gradio_api/call/stylize", json.dumps(body).encode(), "application/json"
    )
    with urllib.request.urlopen(
        f"{studio.url}/gradio_api/call/stylize/{event['event_id']}", timeout=240
    ) as stream:
        text = stream.read().decode()
    events = re.findall(r"event: (\w+)\ndata: (.*)\n", text)
    assert events and events[-1][0] == "complete", text[-500:]
    result, info = json.loads(events[-1][1])
    assert info["state"] == "done" and result["url"].startswith(studio.url), info
    with urllib.request.urlopen(result["url"], timeout=30) as response:
        assert response.read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_during_a_run_stops_it_in_one_line(studio, client, files):
    content, style, _ = files
    client.submit(
        handle_file(str(content)),
        [handle_file(str(style))],
        json.dumps({**SETTINGS, "steps": 2000}),
        api_name="/stylize",
    )

    def running():
        return [
            e for e in client.predict(api_name="/jobs") if e["state"] == "running" and e["step"]
        ]

    job = wait_for(running, 120, "the long job's first steps", every=0.5)[0]
    code = studio.end(signal.SIGINT)
    assert code == 130
    lines = studio.stderr().strip().splitlines()
    assert re.fullmatch(
        rf"nst-tf-studio: stopped by SIGINT during job {job['job']} at step \d+/2000; .*",
        lines[-1],
    ), lines[-3:]
    assert lines[-1].endswith(f"were kept in {studio.kept}")
    assert "Traceback" not in studio.stderr()
    assert not studio.work.exists() and list(studio.parent.iterdir()) == []
    # Nothing lost: the stopped run's image so far, and every result before it, are kept.
    kept = sorted(path.name for path in studio.kept.iterdir())
    stem = f"content-style-{job['job']}-"
    stopped = [name for name in kept if name.startswith(stem) and name.endswith(".flags")]
    assert stopped, kept
    assert "# stopped at step" in (studio.kept / stopped[0]).read_text()
    with Image.open(studio.kept / stopped[0].replace(".flags", ".png")) as image:
        assert image.size == (48, 36)
    assert any(name.startswith("content-tiny-") for name in kept), kept
    assert not [name for name in kept if name.startswith(".")], kept


def test_a_token_guards_the_page_and_the_api(tmp_path):
    # Beyond loopback a token is required (made and printed when none is given); here the
    # same protection on loopback, where the test may listen.
    server = Server(tmp_path, "--token=s3cret-word")
    try:
        with pytest.raises(Exception, match="(?i)login|auth|401|403"):
            Client(server.url, verbose=False)
        with pytest.raises(urllib.error.HTTPError, match="401"):
            _post(f"{server.url}/gradio_api/call/jobs", b'{"data": []}', "application/json")
        client = Client(server.url, auth=("studio", "s3cret-word"), verbose=False)
        assert client.predict(api_name="/jobs") == []
    finally:
        assert server.end(signal.SIGTERM) == 128 + signal.SIGTERM
