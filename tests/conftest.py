"Shared test setup: real ESC-50 from ../shared/data unless $AUDIO_LATENT_DATA says otherwise."
import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('AUDIO_LATENT_DATA', str(ROOT.parent/'shared'/'data'))
os.environ.setdefault('AUDIO_LATENT_CACHE', str(ROOT/'.cache'))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


@pytest.fixture(scope='session')
def catalogue():
    from audio_latent.data import esc50_catalogue
    return esc50_catalogue()


def run_notebook(name, tmp_path, **parameters):
    "Execute nbs/<name> with papermill from the repository root; return the executed notebook's path."
    import papermill as pm
    out = tmp_path/f'executed_{name}'
    pm.execute_notebook(str(ROOT/'nbs'/name), str(out), parameters=parameters, cwd=str(ROOT),
                        kernel_name='python3', progress_bar=False, log_output=False)
    return out


@pytest.fixture
def notebook_runner(tmp_path):
    "run(name, **params) executes a notebook with reports=tmp_path/'reports' and returns that folder."
    def run(name, **parameters):
        reports = tmp_path/'reports'
        run_notebook(name, tmp_path, reports=str(reports), **parameters)
        return reports
    return run


@pytest.fixture(scope='session')
def tiny_reports(tmp_path_factory):
    "Every notebook of reports/params.yaml run ONCE per test session with profile='tiny' into a temporary reports folder."
    from audio_latent.report import run_notebooks
    reports = tmp_path_factory.mktemp('tiny_reports')
    facts = run_notebooks('tiny', reports=reports)
    assert (facts.status == 'ok').all()
    return reports


def assert_figure(path, min_pixels:int=200):
    "A figure a reader can look at: a PNG that decodes, at least `min_pixels` each side, not one flat colour."
    import matplotlib.image as mpimg, numpy as np
    img = mpimg.imread(str(path))
    assert img.ndim == 3 and min(img.shape[:2]) >= min_pixels, (path, img.shape)
    assert float(np.asarray(img[..., :3]).std()) > 0.01, f"{path} is blank"
