"""The demo's MLflow store in the real MLflow UI, rendered by headless Chromium (Debian's package)."""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from mlflow_ui import CHROMIUM, mlflow_ui, rendered_dom

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no {CHROMIUM}: run `make system-deps`")


@pytest.fixture(scope="module")
def ui(demo_run):
    workdir, _ = demo_run
    store = f"sqlite:///{workdir / 'runs/demo/training/mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("ovi-demo-fusion")
    (run,) = client.search_runs([experiment.experiment_id])
    with mlflow_ui(store) as url:
        yield url, experiment, run, store


def test_the_run_page_shows_the_run_and_its_metrics(ui):
    url, experiment, run, _ = ui
    # The overview tab lists every metric; the charts tab draws only the charts scrolled into view.
    dom = rendered_dom(f"{url}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}")
    assert run.info.run_name in dom
    for metric in ("train/loss_video", "train/loss_audio", "train/grad_norm", "val/loss"):
        assert metric in dom, metric


def test_the_experiment_page_lists_the_run(ui):
    url, experiment, run, _ = ui
    dom = rendered_dom(f"{url}/#/experiments/{experiment.experiment_id}/runs")
    assert run.info.run_name in dom and experiment.name in dom


def test_the_artifacts_page_lists_config_and_samples(ui):
    url, experiment, run, _ = ui
    dom = rendered_dom(f"{url}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}/artifacts")
    assert "config.yaml" in dom and "samples" in dom


def test_a_sample_clip_opens_in_the_ui_video_player(ui):
    url, experiment, run, store = ui
    client = MlflowClient(tracking_uri=store)
    (first, *_) = client.list_artifacts(run.info.run_id, "samples/step_0000015")
    dom = rendered_dom(f"{url}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}/artifactPath/{first.path}")
    # The UI fetched the mp4 from the server and handed it to a <video> element.
    assert re.search(r'<video[^>]*src="blob:', dom), dom[-2000:]
