"The committed reports/ is a record: exploring, failing or tampering never rewrites it, and a user error is one line, exit 2."
import hashlib, json, os, shutil, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from conftest import ROOT, run_notebook
from audio_latent.report import (RECORD_ENV, NotebookFailed, RecordMismatch, build_report, main, output_folder,
                                 run_notebooks, track_outputs)


def tree_hash(folder:Path) -> dict:
    "{relative path: sha256} of every file under `folder`."
    return {f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob('*')) if f.is_file()}


def cli(*args, env=None):
    "Run `python -m audio_latent.report ARGS` from the repository root; return (exit status, stdout + stderr)."
    p = subprocess.run([sys.executable, '-m', 'audio_latent.report', *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=600)
    return p.returncode, p.stdout + p.stderr


BROKEN_PLAN = "notebooks: {baseline: 02b_baseline.ipynb, yamnet: 03c_yamnet_experiment.ipynb}\nbaseline:\n  broken: {n_mfcc: 20}\nyamnet: {broken: {}}\n"


def test_output_folder_is_the_record_only_for_the_runner(monkeypatch):
    made = [p for p in (ROOT/'runs').glob('02b_baseline-*')]   # the folders this test makes are removed again
    monkeypatch.delenv(RECORD_ENV, raising=False)
    try:
        assert output_folder('02b_baseline.ipynb', 'cpu', {'n_mfcc': None}).parent == ROOT/'runs'   # by hand: exploration
        monkeypatch.setenv(RECORD_ENV, '1')
        assert output_folder('02b_baseline.ipynb', 'cpu', {'n_mfcc': None}) == ROOT/'reports'
        assert output_folder('02b_baseline.ipynb', 'tiny', {}).parent == ROOT/'runs'
        assert output_folder('02b_baseline.ipynb', 'cpu', {'n_mfcc': 13}).parent == ROOT/'runs'
    finally:
        for p in set((ROOT/'runs').glob('02b_baseline-*')) - set(made): shutil.rmtree(p)


def test_papermill_tiny_run_writes_under_runs_not_reports(tmp_path, monkeypatch):
    "(a) A notebook run by hand with another profile leaves every file of reports/ byte-identical."
    if 'output_folder' not in (ROOT/'nbs'/'02b_baseline.ipynb').read_text(): pytest.skip("02b not yet wired")
    monkeypatch.delenv(RECORD_ENV, raising=False)
    before, t0 = tree_hash(ROOT/'reports'), pd.Timestamp.now().timestamp()
    run_notebook('02b_baseline.ipynb', tmp_path, profile='tiny')
    assert tree_hash(ROOT/'reports') == before
    written = [f for f in (ROOT/'runs').glob('02b_baseline-tiny-*/results/baseline.csv') if f.stat().st_mtime >= t0]
    assert written, 'no exploration results under runs/02b_baseline-tiny-*/'


def test_failed_run_leaves_executed_notebook_and_facts_byte_identical(tmp_path, capsys):
    "(b) + (e) A failing notebook changes nothing of the record; `report run` says so in one line and exits 2."
    plan = tmp_path/'plan.yaml'; plan.write_text(BROKEN_PLAN)
    reports = tmp_path/'reports'; runs = reports/'runs'; runs.mkdir(parents=True); (reports/'results').mkdir()
    (runs/'02b_baseline.ipynb').write_text('{"the": "previous executed notebook"}')
    (reports/'results'/'baseline.csv').write_text('previous results\n')
    pd.DataFrame([dict(notebook='02b_baseline.ipynb', status='ok', wall_s=29.1, parameters='{"profile": "broken"}', key='b41f1d17056f2eb9',
                       outputs='{"results/baseline.csv": "x"}')]).to_csv(runs/'run_facts.csv', index=False)
    before = tree_hash(reports)
    with pytest.raises(SystemExit) as e: main(['run', '--profile', 'broken', '--params', str(plan), '--reports', str(reports), '--only', 'baseline'])
    out = capsys.readouterr()
    assert e.value.code == 2 and 'Traceback' not in out.out + out.err
    assert out.err.startswith('[report] FAILED: 02b_baseline.ipynb failed at cell'), out.err
    failed = runs/'failed'/'02b_baseline.ipynb'
    assert str(failed) in out.err and failed.exists() and 'unchanged' in out.err
    after = tree_hash(reports)
    assert {k: v for k, v in after.items() if not k.startswith('runs/failed/')} == before
    assert pd.read_csv(runs/'failed'/'failures.csv').notebook.tolist() == ['02b_baseline.ipynb']


def test_exploration_profile_writes_under_runs_report_profile(monkeypatch):
    "`make report PROFILE=tiny` (`run_notebooks` at another profile, no reports folder) works in runs/report-<profile>/."
    plan = ROOT/'runs'/'test-plan-broken.yaml'; (ROOT/'runs').mkdir(exist_ok=True); plan.write_text(BROKEN_PLAN)
    folder = ROOT/'runs'/'report-broken'; shutil.rmtree(folder, ignore_errors=True)
    before = tree_hash(ROOT/'reports')
    try:
        with pytest.raises(NotebookFailed, match=r'report-broken/runs/failed/02b_baseline.ipynb'):
            run_notebooks('broken', params_file=plan, only=['02b_baseline.ipynb'])
        assert tree_hash(ROOT/'reports') == before and (folder/'runs'/'failed'/'02b_baseline.ipynb').exists()
    finally:
        plan.unlink(); shutil.rmtree(folder, ignore_errors=True)


def test_build_refuses_results_changed_after_the_run(tmp_path):
    "(c) + (d) A real tiny run (picked by stem) records its outputs; a file changed afterwards stops the build, naming it."
    reports = tmp_path/'reports'
    facts = run_notebooks('tiny', reports=reports, only=['02b_baseline'])
    assert facts.notebook.tolist() == ['02b_baseline.ipynb'] and (facts.status == 'ok').all()
    outputs = json.loads(pd.read_csv(reports/'runs'/'run_facts.csv').outputs[0])
    assert {'results/baseline.csv', 'predictions/baseline.csv', 'results/runs.csv#baseline'} <= set(outputs)
    assert outputs == track_outputs(reports, 'baseline') and (reports/'runs'/'environment.csv').exists()
    build_report(reports)
    report = (reports/'report.md').read_bytes()
    good = (reports/'results'/'baseline.csv').read_text()
    (reports/'results'/'baseline.csv').write_text(good.replace('0.', '0.9', 1))
    with pytest.raises(RecordMismatch, match=r"results/baseline.csv is not the file 02b_baseline.ipynb's recorded run wrote: "
                                             r"regenerate it with `python -m audio_latent.report run --profile tiny"):
        build_report(reports)
    assert (reports/'report.md').read_bytes() == report   # refused before anything was written
    code, out = cli('build', '--reports', reports)
    assert code == 2 and 'results/baseline.csv is not the file' in out and '--only 02b_baseline.ipynb --force' in out and 'Traceback' not in out, out
    (reports/'results'/'baseline.csv').write_text(good)
    runs = pd.read_csv(reports/'results'/'runs.csv', keep_default_na=False)
    runs.loc[runs.experiment == 'baseline', 'wall_s'] = 999.0
    runs.to_csv(reports/'results'/'runs.csv', index=False)
    with pytest.raises(RecordMismatch, match=r'results/runs.csv#baseline is not the file'): build_report(reports)


@pytest.mark.parametrize('args, message', [
    (['run', '--profile', 'nope'], "Profile 'nope' is not defined for baseline"),
    (['run', '--profile', 'tiny', '--only', 'nothing'], "--only 'nothing' matches no notebook of the plan; known notebooks (file, stem, track): 02b_baseline.ipynb (02b_baseline, baseline)"),
    (['build'], 'No results in {tmp}/reports/results'),
    (['seal'], 'No run facts in {tmp}/reports/runs'),
])
def test_user_errors_are_one_message_and_exit_2(tmp_path, args, message):
    "(e) Unknown profile, --only matching nothing, no results, nothing to seal: exit 2, the message, no traceback."
    code, out = cli(*args, '--reports', tmp_path/'reports')
    assert code == 2 and message.format(tmp=tmp_path) in out and 'Traceback' not in out, out
    assert not (tmp_path/'reports'/'runs').exists()   # nothing was started


def test_data_not_found_is_one_message_and_exit_2(tmp_path, monkeypatch, capsys):
    "(e) No ESC-50 anywhere find_esc50 looks (settings.ini's data_path taken away too): exit 2 with its message, nothing started."
    import audio_latent.data as data
    monkeypatch.setenv('AUDIO_LATENT_DATA', str(tmp_path/'nowhere')); monkeypatch.setenv('AUDIO_LATENT_CACHE', str(tmp_path/'cache'))
    if hasattr(data, 'settings_data_path'): monkeypatch.setattr(data, 'settings_data_path', lambda *a, **k: None)
    with pytest.raises(SystemExit) as e: main(['run', '--profile', 'tiny', '--only', 'vae', '--reports', str(tmp_path/'reports')])
    out = capsys.readouterr()
    assert e.value.code == 2 and out.err.startswith('[report] error: ESC-50 not found. Looked in:') and 'Traceback' not in out.out + out.err, out.err
    assert not (tmp_path/'reports').exists()
