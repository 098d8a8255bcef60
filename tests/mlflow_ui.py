"""The MLflow UI as a user opens it: `mlflow ui` on 127.0.0.1 and Debian's Chromium, headless.

Also makes the README's picture of a run:
    .venv/bin/python tests/mlflow_ui.py sqlite:///$PWD/runs/demo/training/mlflow.db docs/mlflow-ui-demo.png
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root, and no background traffic: this machine has no network beyond loopback.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
# Virtual time lets the React app fetch from the server and draw its charts before the dump.
RENDER_BUDGET_MS = 30_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_ui(backend_store_uri: str, timeout_s: float = 120.0) -> Iterator[str]:
    """`mlflow ui` serving the store; yields its base URL and stops it afterwards."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([str(mlflow), "ui", "--backend-store-uri", backend_store_uri, "--host", "127.0.0.1",
                               "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"mlflow ui did not answer on {url}:\n{log.read().decode()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()  # the server stops its uvicorn workers and job runners itself
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def chromium(url: str, *args: str) -> str:
    """Run headless Chromium on `url` with extra flags (`--dump-dom`, `--screenshot=...`); its stdout."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                 f"--virtual-time-budget={RENDER_BUDGET_MS}", *args, url],
                                capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed on {url}: {result.stderr[-2000:]}")
    return result.stdout


def rendered_dom(url: str) -> str:
    return chromium(url, "--dump-dom")


def screenshot(url: str, path: str | Path, width: int = 1600, height: int = 1600) -> Path:
    # Charts of a first visit were seen still loading at the end of the budget; the second visit draws them.
    rendered_dom(url)
    chromium(url, "--run-all-compositor-stages-before-draw", f"--screenshot={Path(path).resolve()}",
             f"--window-size={width},{height}")
    return Path(path)


def main(store_uri: str, output: str, experiment: str = "ovi-demo-fusion") -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store_uri)
    exp = client.get_experiment_by_name(experiment)
    run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    with mlflow_ui(store_uri) as url:
        print(screenshot(f"{url}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}/model-metrics", output))


if __name__ == "__main__":
    main(*sys.argv[1:])
