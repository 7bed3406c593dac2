"""The quick start in a real browser: headless Chromium shows a trial's note and diagram.

Runs ``optuna-rnn search`` with its defaults (the SQLite file and the artifact folder
beside it), starts optuna-dashboard with the command the search printed, and has Chromium
render a trial page. Skips only where no Chromium is installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from _helpers import free_port, tiny_cli_args

from optuna_rnn.cell import Cell
from optuna_rnn.cell.render import render_svg

ROOT = Path(__file__).resolve().parents[1]
BROWSER = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium here (apt-get install chromium; .ci/run does)"
)
#: Chromium flags for a quiet, offline, throwaway headless run.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
SEARCH = ["search", *tiny_cli_args(), "--sampler", "random", "--n-trials", "3", "--no-progress"]


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.headers["Content-Type"], reply.read()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, optuna.Study]]:
    """The base URL of optuna-dashboard serving a finished quick-start search, and the study."""
    root = tmp_path_factory.mktemp("quickstart")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "optuna_rnn.cli", *SEARCH],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (printed,) = re.findall(r"watch it with: (optuna-dashboard .*)", done.stdout)
    command = shlex.split(printed)
    assert command[1:] == ["sqlite:///optuna_rnn.db", "--artifact-dir", "optuna_rnn-artifacts"]
    port = free_port()
    server = subprocess.Popen(
        [
            shutil.which("optuna-dashboard") or "optuna-dashboard",
            *command[1:],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--quiet",
        ],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/api/studies")
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None and time.monotonic() < deadline, "no dashboard"
                time.sleep(0.5)
        studies = optuna.get_all_study_names(f"sqlite:///{root / 'optuna_rnn.db'}")
        yield (
            base,
            optuna.load_study(study_name=studies[0], storage=f"sqlite:///{root / 'optuna_rnn.db'}"),
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def _rendered_dom(url: str) -> str:
    """The DOM of ``url`` after Chromium has run its scripts (retried while it is empty)."""
    dom = ""
    for budget in (10_000, 20_000, 40_000):
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [
                    BROWSER,
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    f"--virtual-time-budget={budget}",
                    "--dump-dom",
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
        dom = done.stdout
        if "cell diagram" in dom:
            break
    return dom


def test_a_trial_page_shows_the_equations_and_the_diagram(
    dashboard: tuple[str, optuna.Study],
) -> None:
    base, study = dashboard
    trial = study.trials[0]
    dom = _rendered_dom(f"{base}/dashboard/studies/{study._study_id}/trials")
    equations = trial.user_attrs["equations"]
    assert f"Trial 0: {trial.user_attrs['zoo_name']}" in dom
    for line in equations.splitlines():
        assert line.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;") in dom
    # the note's full-width image and the artifact list's preview: the trial's SVG
    sources = re.findall(r'<img[^>]*alt="cell diagram"[^>]*src="([^"]+)"', dom)
    assert len(sources) == 1
    assert sources[0].startswith(f"/artifacts/{study._study_id}/{trial._trial_id}/")
    assert dom.count(f'src="{sources[0]}"') == 2
    mimetype, body = _get(base + sources[0])
    assert mimetype == "image/svg+xml"
    assert body.decode() == render_svg(Cell.parse(equations))
