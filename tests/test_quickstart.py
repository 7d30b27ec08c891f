"""First contact: the quickstart asks the model hub before downloading, and always ends with a real click-and-remove."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE, REPO
from PIL import Image

from ovseg.config import settings_from_params
from ovseg.editing import dilate

pytestmark = pytest.mark.slow


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers every model request with an empty model: reachable, but nothing to download."""

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        body = json.dumps({"id": "laion/CLIP", "sha": "0" * 40, "siblings": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ovseg(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ovseg.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_the_hub_is_asked_briefly_and_a_silent_one_means_offline(fake_hub: str) -> None:
    answering = _ovseg("weights", "reachable", env={**os.environ, "HF_ENDPOINT": fake_hub})
    assert answering.returncode == 0 and "answers" in answering.stdout
    started = time.perf_counter()
    silent = _ovseg(
        "weights",
        "reachable",
        "--timeout",
        "2",
        env={**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"},
    )
    assert silent.returncode == 1 and "offline" in silent.stdout
    assert time.perf_counter() - started < 30
    offline = _ovseg("weights", "reachable", env={**os.environ, "HF_ENDPOINT": fake_hub, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1  # offline mode is respected without asking


def test_the_quickstart_tries_the_hub_then_shows_a_real_click_and_removal(tmp_path: Path, fake_hub: str) -> None:
    project = tmp_path / "project"
    (project / "data/images").mkdir(parents=True)
    shutil.copy(EXAMPLE, project / "data/images/chelsea.png")
    shutil.copytree(REPO / "scripts", project / "scripts")
    (project / ".venv").symlink_to(REPO / ".venv")
    env = {
        **{k: v for k, v in os.environ.items() if k != "OVSEG_CHECKPOINTS"},
        "HF_ENDPOINT": fake_hub,  # answers, but has nothing: the download fails and the script goes on
        "OVSEG_CHECKPOINTS": str(project / "checkpoints"),
        "COLUMNS": "200",
    }
    result = subprocess.run(
        ["bash", "scripts/quickstart.sh", "--no-install"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "Downloading the cpu preset's CLIP (ViT-B/32, about 600 MB" in out
    assert "The download failed; going on without CLIP weights." in out
    assert "a tiny RANDOM CLIP chooses among them" in out  # the honest message, as offline
    assert "Traceback" not in out
    for picture in (
        "data/output/segment/chelsea/overlay.png",
        "data/output/click/segment/chelsea/overlay.png",
        "data/output/click/edit/chelsea/before_after.png",
    ):
        assert picture in out and (project / picture).is_file()
    # The click's result is real: the cat's face is masked and painted over, the wall is not.
    mask = np.asarray(Image.open(project / "data/output/click/segment/chelsea/mask.png")) > 0
    assert mask[170:260, 150:330].mean() > 0.9 and mask[0:60, 400:451].mean() < 0.05
    before = np.asarray(Image.open(EXAMPLE).convert("RGB")).astype(int)
    after = np.asarray(Image.open(project / "data/output/click/edit/chelsea/edited.png").convert("RGB")).astype(int)
    outside = ~dilate(mask, settings_from_params({"preset": "cpu"}).edit.dilate_px)
    assert np.abs(after - before)[mask].mean() > 10 and (after[outside] == before[outside]).all()
