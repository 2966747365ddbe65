"""`python -m audio_latent.experiment check`: it must be able to fail on everything it vouches for.

Each test builds a small reference from rows of the committed reports/ (four runs: two exact, two trained seeds, the
McNemar rows between them and a few clips' predictions), copies it as the "rerun", tampers with one thing and asserts
exit status 1 (the check fails) or 2 (a usage error: one message, no traceback). Fast: no TensorFlow, no notebook."""
import shutil, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from audio_latent.experiment import main

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT/'reports'
def _run_of(experiment, representation, seed):
    "The committed run id of a representation's seed (looked up: a regenerated record changes ids)."
    runs = pd.read_csv(COMMITTED/'results'/'runs.csv', dtype=str, keep_default_na=False)
    return runs[(runs.experiment == experiment) & (runs.representation == representation) & (runs.seed == str(seed))].run.iloc[0]

EXACT, EXACT2 = _run_of('baseline', 'mfcc', 0), _run_of('yamnet', 'yamnet/selected', 0)
TRAINED, TRAINED2 = _run_of('vae', 'vae/patch/128', 0), _run_of('vae', 'vae/patch/128', 1)
RUNS = [EXACT, EXACT2, TRAINED, TRAINED2]


def _read(path): return pd.read_csv(path, dtype=str, keep_default_na=False)
def _write(df, path): df.to_csv(path, index=False, lineterminator='\n')
def _edit(path, fn): _write(fn(_read(path)), path)


@pytest.fixture(scope='module')
def sample(tmp_path_factory):
    "A small reports folder made of committed rows."
    ref = tmp_path_factory.mktemp('check')/'reports'
    (ref/'results').mkdir(parents=True); (ref/'predictions').mkdir()
    runs = _read(COMMITTED/'results'/'runs.csv'); _write(runs[runs.run.isin(RUNS)], ref/'results'/'runs.csv')
    for name in ('baseline', 'yamnet', 'vae'):
        rows = _read(COMMITTED/'results'/f'{name}.csv')
        _write(rows[rows.run.isin(RUNS)].groupby('run').head(12), ref/'results'/f'{name}.csv')
        preds = _read(COMMITTED/'predictions'/f'{name}.csv'); preds = preds[preds.run.isin(RUNS)]
        _write(preds[preds.stem.isin(sorted(preds.stem.unique())[:5])], ref/'predictions'/f'{name}.csv')
    mc = _read(COMMITTED/'results'/'mcnemar.csv')
    _write(mc[mc.run.map(lambda r: all(p in RUNS for p in r.split('+')))], ref/'results'/'mcnemar.csv')
    return ref


@pytest.fixture
def sides(sample, tmp_path):
    "(reference, rerun): two copies of the sample, to tamper with."
    shutil.copytree(sample, tmp_path/'ref'); shutil.copytree(sample, tmp_path/'new')
    return tmp_path/'ref', tmp_path/'new'


def check(capsys, *args):
    rc = main(['check', *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_sample_is_what_the_tests_think(sample):
    mc = _read(sample/'results'/'mcnemar.csv')
    # the declared pairs among these runs (mfcc vs yamnet/selected, mfcc vs vae/patch/128, vae/patch/128 vs yamnet/selected), every seed
    assert set(mc.run) == {f'{EXACT}+{EXACT2}', f'{EXACT}+{TRAINED}', f'{EXACT}+{TRAINED2}', f'{TRAINED}+{EXACT2}', f'{TRAINED2}+{EXACT2}'}, set(mc.run)
    assert len(_read(sample/'predictions'/'vae.csv')) == 40   # seeds 0 and 1: 2 distances x 2 protocols x 5 clips each
    assert set(_read(sample/'results'/'runs.csv').run) == set(RUNS)


def test_untampered_copy_passes(sides, capsys):
    rc, out, err = check(capsys, *sides)
    assert rc == 0, out + err
    for line in ('results files: 4 on both sides', 'run ids: the same on every row',
                 'runs.csv: 4/4 runs recorded identically (commit and wall_s aside)',
                 'predictions: exact runs 40/40 labels identical; other runs 0/40 labels changed',
                 'duplicated keys: none; rows whose run is not in their runs.csv: none', 'check: everything agrees'):
        assert line in out, out
    n = sum(len(_read(f)) for f in (sides[0]/'results').glob('*.csv') if f.name != 'runs.csv')
    exact, tol = out.split('exact rows: ')[1].split(' identical')[0], out.split('within tolerance: ')[1].split(' ')[0]
    assert int(exact.split('/')[1]) + int(tol.split('/')[1]) == n and exact.split('/')[0] == exact.split('/')[1], out


def test_results_folders_and_mixed_forms_pass(sides, capsys):
    ref, new = sides
    rc, out, _ = check(capsys, ref/'results', new/'results')          # `make check-results` of old
    assert rc == 0 and 'predictions: not compared (no predictions/ folder in the reference and the rerun)' in out, out
    rc, out, _ = check(capsys, ref, new/'results')
    assert rc == 0 and 'not compared (no predictions/ folder in the rerun)' in out, out


def _set_first(col, value, where=None):
    def fn(df):
        i = df.index[0] if where is None else df.index[where(df)][0]
        df.loc[i, col] = value; return df
    return fn


def _rename_run(root, old, new):
    "Rename a run everywhere on one side (runs.csv and every row), as a code change would."
    for f in [*(root/'results').glob('*.csv'), *(root/'predictions').glob('*.csv')]:
        f.write_text(f.read_text().replace(old, new))
    _edit(root/'results'/'runs.csv', lambda d: d.assign(code=d.code.where(d.run != new, 'c0de0c0de0c0')))


# (tamper(reference, rerun), expected exit status, text the output must hold)
TAMPERS = {
    'run_id_in_no_runs_csv': (lambda r, n: _edit(n/'results'/'baseline.csv', _set_first('run', 'ffffffffffff')), 1,
                              "rerun results/baseline.csv: 1 rows name run(s) not in its runs.csv: ffffffffffff"),
    'run_id_changed_everywhere': (lambda r, n: _rename_run(n, TRAINED, 'aaaaaaaaaaaa'), 1,
                                  f'{TRAINED} -> aaaaaaaaaaaa in '),
    'runs_csv_settings_changed': (lambda r, n: _edit(n/'results'/'runs.csv', _set_first('settings', '{}', lambda d: d.run == TRAINED)), 1,
                                  f'run {TRAINED} (vae vae/patch/128 seed 0): settings differ'),
    'runs_csv_code_changed': (lambda r, n: _edit(n/'results'/'runs.csv', _set_first('code', 'c0de0c0de0c0', lambda d: d.run == EXACT)), 1,
                              f'run {EXACT} (baseline mfcc seed 0): code differ'),
    'runs_csv_exact_flipped': (lambda r, n: _edit(n/'results'/'runs.csv', _set_first('exact', 'True', lambda d: d.run == TRAINED)), 1,
                               'exact differ'),
    'runs_csv_extra_run': (lambda r, n: _edit(n/'results'/'runs.csv', lambda d: pd.concat([d, d.iloc[:1].assign(run='bbbbbbbbbbbb')])), 1,
                           'run bbbbbbbbbbbb (baseline mfcc seed 0) is only in the rerun'),
    'runs_csv_run_missing': (lambda r, n: _edit(n/'results'/'runs.csv', lambda d: d[d.run != TRAINED2]), 1,
                             f'run {TRAINED2} (vae vae/patch/128 seed 1) is only in the reference'),
    'duplicated_row_in_rerun': (lambda r, n: _edit(n/'results'/'yamnet.csv', lambda d: pd.concat([d, d.iloc[:1]])), 1,
                                'rerun results (yamnet.csv): 2 rows share 1 key(s)'),
    'duplicated_row_in_reference': (lambda r, n: _edit(r/'results'/'vae.csv', lambda d: pd.concat([d, d.iloc[-1:]])), 1,
                                    'reference results (vae.csv): 2 rows share 1 key(s)'),
    'duplicated_run_in_runs_csv': (lambda r, n: _edit(n/'results'/'runs.csv', lambda d: pd.concat([d, d.iloc[:1]])), 1,
                                   'rerun runs.csv: 2 rows record 1 run id(s) more than once'),
    'experiment_only_in_rerun': (lambda r, n: _write(_read(n/'results'/'baseline.csv').assign(experiment='extra'), n/'results'/'extra.csv'), 1,
                                 'results/extra.csv is only in the rerun'),
    'results_file_only_in_reference': (lambda r, n: (n/'results'/'yamnet.csv').unlink(), 1,
                                       'results/yamnet.csv is only in the reference'),
    'mcnemar_exact_row_edited': (lambda r, n: _edit(n/'results'/'mcnemar.csv', _set_first('value', '1.000000', lambda d: d.run == f'{EXACT}+{EXACT2}')), 1,
                                 'FAIL 1 result row(s) disagree'),
    'mcnemar_trained_row_edited': (lambda r, n: _edit(n/'results'/'mcnemar.csv', _set_first('value', '999.000000', lambda d: d.run == f'{EXACT}+{TRAINED}')), 1,
                                   'FAIL 1 result row(s) disagree'),
    'prediction_of_exact_run_changed': (lambda r, n: _edit(n/'predictions'/'baseline.csv', lambda d: d.assign(predicted=d.predicted.where(d.index != d.index[0], '49'))), 1,
                                        '1 label(s) of exact runs changed'),
    'prediction_target_changed': (lambda r, n: _edit(n/'predictions'/'vae.csv', lambda d: d.assign(target=d.target.where(d.index != d.index[0], '49'))), 1,
                                  '1 target(s) changed'),
    'prediction_key_missing': (lambda r, n: _edit(n/'predictions'/'vae.csv', lambda d: d.iloc[1:]), 1,
                               'predictions/vae.csv: 1 key(s) only in the reference'),
    'prediction_file_missing': (lambda r, n: (n/'predictions'/'yamnet.csv').unlink(), 1,
                                'predictions/yamnet.csv is only in the reference'),
    # allowed differences: they pass, and say what moved
    'runs_csv_commit_and_wall_time': (lambda r, n: _edit(n/'results'/'runs.csv', lambda d: d.assign(commit='0123456789', wall_s='1.0')), 0,
                                      'runs.csv: 4/4 runs recorded identically (commit and wall_s aside)'),
    'prediction_of_trained_run_changed': (lambda r, n: _edit(n/'predictions'/'vae.csv', lambda d: d.assign(predicted=d.predicted.where(d.index != d.index[0], '49'))), 0,
                                          'other runs 1/40 labels changed (counted, not failed)'),
}


@pytest.mark.parametrize('kind', TAMPERS)
def test_tampering_is_caught(kind, sides, capsys):
    tamper, want_rc, text = TAMPERS[kind]
    tamper(*sides)
    rc, out, err = check(capsys, *sides)
    assert rc == want_rc and text in out, f"exit {rc}\n{out}{err}"


def test_changed_run_id_is_accepted_only_when_allowed_and_recorded(sides, capsys):
    ref, new = sides
    _rename_run(new, TRAINED, 'aaaaaaaaaaaa')
    rc, out, _ = check(capsys, ref, new, '--allow-new-runs')
    assert rc == 0, out
    assert f'  {TRAINED} -> aaaaaaaaaaaa (vae vae/patch/128 seed 0)' in out and '1 of them under a new id' in out, out
    # an id changed in the rows but recorded in no runs.csv is refused even so
    _edit(new/'results'/'vae.csv', lambda d: d.assign(run=d.run.replace(TRAINED2, 'dddddddddddd')))
    rc, out, _ = check(capsys, ref, new, '--allow-new-runs')
    assert rc == 1 and f"{TRAINED2} -> dddddddddddd in 12 rows (e.g. in vae results): dddddddddddd is not in the rerun's runs.csv" in out, out


def _no_results_file(root):
    for f in (root/'results').glob('*.csv'):
        if f.name != 'runs.csv': f.unlink()


# (make the rerun argument wrong, text of the one message)
USAGE_ERRORS = {
    'nonexistent_folder': (lambda n: n/'nope', 'no such folder'),
    'a_file': (lambda n: n/'results'/'runs.csv', 'is a file'),
    'parent_folder': (lambda n: n.parent, 'holds neither results/ nor results CSVs'),
    'empty_folder': (lambda n: (n/'empty').mkdir() or n/'empty', 'holds neither results/ nor results CSVs'),
    'missing_runs_csv': (lambda n: (n/'results'/'runs.csv').unlink() or n, 'has no runs.csv'),
    'no_results_file': (lambda n: _no_results_file(n) or n, 'has runs.csv but no results file'),
    'non_numeric_value': (lambda n: _edit(n/'results'/'vae.csv', lambda d: d.assign(value=d.value.where(d.index != d.index[2], 'abc'))) or n,
                          "vae.csv, row 3 (line 4): value 'abc' is not a number"),
    'missing_columns': (lambda n: _edit(n/'results'/'yamnet.csv', lambda d: d.drop(columns=['metric', 'k'])) or n,
                        'yamnet.csv lacks the column(s) metric, k'),
    'runs_csv_missing_columns': (lambda n: _edit(n/'results'/'runs.csv', lambda d: d.drop(columns=['exact'])) or n,
                                 'runs.csv lacks the column(s) exact'),
    'prediction_missing_columns': (lambda n: _edit(n/'predictions'/'vae.csv', lambda d: d.drop(columns=['predicted'])) or n,
                                   'vae.csv lacks the column(s) predicted'),
}


@pytest.mark.parametrize('kind', USAGE_ERRORS)
def test_usage_error_is_one_message_and_exit_2(kind, sides, capsys):
    make, text = USAGE_ERRORS[kind]
    ref, new = sides
    bad = make(new)
    rc, out, err = check(capsys, ref, bad)
    assert rc == 2 and text in err and err.startswith('check: ') and err.count('\n') == 1, f"exit {rc}\n{out}{err}"
    rc, out, err = check(capsys, bad, ref)   # either side
    assert rc == 2 and text in err, f"exit {rc}\n{out}{err}"


def test_command_line_exit_status_without_traceback_or_tensorflow(sides):
    ref, new = sides
    code = ("import sys; from audio_latent.experiment import main; rc = main(sys.argv[1:]); "
            "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow'); raise SystemExit(rc)")
    ok = subprocess.run([sys.executable, '-c', code, 'check', str(ref), str(new)], capture_output=True, text=True)
    assert ok.returncode == 0 and 'no tensorflow' in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, '-m', 'audio_latent.experiment', 'check', str(ref), str(new/'nope')], capture_output=True, text=True)
    assert bad.returncode == 2 and 'Traceback' not in bad.stderr and bad.stderr.strip().count('\n') == 0, bad.stderr
