"The Dataset seam: a collection the tests build from real ESC-50 clips, checked, fingerprinted and run through the tracks."
import os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, soundfile as sf

from datasets import build_collection

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def collection(tmp_path_factory):
    "48 clips, 6 classes, 4 folds, 0.2-60 s, 8/16/44.1 kHz, WAV and FLAC, with a superlabel."
    return build_collection(tmp_path_factory.mktemp('coll')/'birds')


def check(path, *extra):
    return subprocess.run([sys.executable, '-m', 'audio_latent.dataset', 'check', str(path), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_check_describes_a_good_collection(collection):
    r = check(collection)
    assert r.returncode == 0, r.stderr
    assert "Dataset('birds': 48 clips, 6 classes, 4 folds, levels sub/super, 8000, 16000, 44100 Hz, 0.20-60.00 s" in r.stdout


def _variant(collection, tmp_path, edit, name='bad.csv'):
    "A copy of the catalogue beside the same audio, changed by edit(rows) -> rows (or bytes)."
    rows = pd.read_csv(collection, dtype=str, keep_default_na=False)
    out = edit(rows)
    target = collection.parent/name
    if isinstance(out, bytes): target.write_bytes(out)
    else: out.to_csv(target, index=False)
    return target


def _fifo(rows, folder):
    os.mkfifo(folder/'pipe.wav')
    return pd.concat([rows, rows.iloc[[0]].assign(filename='pipe.wav')])

def _low_rate(rows, folder):
    sf.write(folder/'low.wav', np.zeros(4000, np.float32), 4000)
    return pd.concat([rows, rows.iloc[[0]].assign(filename='low.wav')])

def _empty_audio(rows, folder):
    sf.write(folder/'empty.wav', np.zeros(0, np.float32), 16000)
    return pd.concat([rows, rows.iloc[[0]].assign(filename='empty.wav')])


BAD = {   # name: (edit(rows, folder), what the message must say)
    'missing column': (lambda r, f: r.drop(columns='fold'), 'missing column(s) fold'),
    'not UTF-8': (lambda r, f: 'filename,label,fold\ncaf\xe9.wav,x,1\n'.encode('latin-1'), 'not UTF-8 text'),
    'duplicate filename': (lambda r, f: pd.concat([r, r.iloc[[3]]]), 'duplicate filename'),
    'two missing files, both named': (lambda r, f: r.assign(filename=['gone1.wav', 'gone2.wav'] + r.filename[2:].tolist()),
                                      'gone1.wav: missing; gone2.wav: missing'),
    'a fold with no clips': (lambda r, f: r.assign(fold=r.fold.replace('3', '5')), 'fold(s) 3 have no clips'),
    'fewer than 3 folds': (lambda r, f: r.assign(fold=r.fold.replace({'3': '1', '4': '2'})), 'at least 3 are needed'),
    'label with spaces': (lambda r, f: r.assign(label=[' ' + r.label[0]] + r.label[1:].tolist()), 'leading or trailing spaces at line(s) 2'),
    'one class': (lambda r, f: r.assign(label='dog'), '1 class(es)'),
    'non-integer fold': (lambda r, f: r.assign(fold=['1.5'] + r.fold[1:].tolist()), 'fold must be an integer: line(s) 2'),
    'FIFO in the catalogue': (_fifo, 'pipe.wav: a FIFO, not an audio file (skipped unopened)'),
    'sample rate below 8 kHz': (_low_rate, 'low.wav: sample rate 4000 Hz is outside 8000-96000 Hz'),
    'empty audio file': (_empty_audio, 'empty.wav: holds no samples'),
    'two superlabels for one label': (lambda r, f: r.assign(superlabel=['x'] + r.superlabel[1:].tolist()), 'more than one superlabel'),
}


@pytest.mark.parametrize('kind', list(BAD))
def test_bad_catalogue_one_message_exit_2_nothing_written(collection, tmp_path, kind):
    edit, says = BAD[kind]
    folder = collection.parent
    bad = _variant(collection, tmp_path, lambda rows: edit(rows, folder), name=f'bad-{kind.replace(" ", "_")}.csv')
    before = sorted(p.name for p in folder.iterdir())
    r = check(bad)
    after = sorted(p.name for p in folder.iterdir())
    for extra in ('pipe.wav', 'low.wav', 'empty.wav'): (folder/extra).unlink(missing_ok=True)
    assert r.returncode == 2, (kind, r.stdout, r.stderr)
    assert says in r.stderr, (kind, r.stderr)
    assert 'Traceback' not in r.stderr and r.stdout == ''
    assert after == before   # nothing written beside the catalogue


def test_class_in_one_fold_is_a_warning_not_an_error(collection, tmp_path):
    edit = lambda rows: rows.assign(fold=np.where(rows.label == rows.label[0], '1', rows.fold))
    r = check(_variant(collection, tmp_path, edit, 'onefold.csv'))
    assert r.returncode == 0, r.stderr
    assert 'appear in one fold only' in r.stdout


def test_allow_missing_leaves_out_and_names(collection, tmp_path):
    from audio_latent.dataset import from_csv
    bad = _variant(collection, tmp_path, lambda r: r.assign(filename=['gone1.wav'] + r.filename[1:].tolist()), 'gap.csv')
    with pytest.warns(UserWarning, match='left out'):
        ds = from_csv(bad, allow_missing=True)
    assert len(ds) == 47 and ds.excluded == (('gone1.wav', 'missing'),) and 'gone1.wav' in ds.describe()


def test_esc50_altered_or_missing_clip_stops_with_exit_2(tmp_path):
    from audio_latent.dataset import esc50
    real = esc50()
    fake = tmp_path/'ESC-50'; (fake/'audio').mkdir(parents=True); (fake/'meta').mkdir()
    (fake/'meta'/'esc50.csv').write_bytes((real.root/'meta'/'esc50.csv').read_bytes())
    paths = real.catalogue.path.tolist()
    for p in paths[:-2]: (fake/'audio'/Path(p).name).symlink_to(p)
    (fake/'audio'/Path(paths[-2]).name).write_bytes(Path(paths[0]).read_bytes())   # a valid clip, the wrong one
    r = check(fake)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert f'{Path(paths[-2]).name}: altered' in r.stderr and f'{real.catalogue.filename.iloc[-1]}: missing' in r.stderr
    ok = check(fake, '--allow-missing')
    assert ok.returncode == 0 and '2 left out' in ok.stdout


def test_same_file_names_as_esc50_never_get_its_cached_arrays(tmp_path, monkeypatch):
    "A collection whose files carry ESC-50's names (other audio) gets its own audio, features and run ids."
    monkeypatch.setenv('AUDIO_LATENT_CACHE', str(tmp_path/'cache'))
    from audio_latent.dataset import esc50, from_csv, dataset_audio, content_fingerprint, Dataset
    from audio_latent.baseline import BaselineConfig, run_baseline
    twin = from_csv(build_collection(tmp_path/'twin', classes=(0, 1, 10), n_folds=3, per_fold=1, same_names_as_esc50=True))
    e50 = esc50(); fold_of = dict(zip(twin.catalogue.stem, twin.catalogue.fold))
    cat = e50.catalogue[e50.catalogue.stem.isin(fold_of)].reset_index(drop=True)
    cat = cat.assign(fold=cat.stem.map(fold_of))                      # the twin's folds, so both searches are alike
    real = Dataset(e50.name, e50.root, cat, e50.source, content_fingerprint(cat), 5.0)
    assert sorted(real.catalogue.stem) == sorted(twin.catalogue.stem)          # the same 9 names
    cfg = BaselineConfig(n_boot=10)
    runs = {}
    for ds in (real, twin):
        audio, cat = dataset_audio(ds, seconds=5.0)
        res = run_baseline(cfg, cat, audio, tmp_path/ds.name, data=ds.name, fingerprint=ds.fingerprint)
        runs[ds.name] = (audio, res[res.representation == 'mfcc'].run.iloc[0])
    assert runs['ESC-50'][1] != runs['twin'][1]
    assert not np.allclose(runs['ESC-50'][0][:, :1000], runs['twin'][0][:, :1000])


def report(*args):
    return subprocess.run([sys.executable, '-m', 'audio_latent.report', *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=1200)


TRACKS = ('baseline', 'yamnet', 'vae', 'metric_learning', 'thesis_models')


def test_report_runs_every_track_end_to_end(collection, tmp_path):
    "`make report DATASET=...` on the tiny profile: every track on the collection, its own report, ESC-50's files untouched."
    reports = tmp_path/'reports'
    r = report('all', '--profile', 'tiny', '--dataset', collection, '--reports', reports)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = reports/'datasets'/'birds'
    for track in TRACKS:
        res = pd.read_csv(out/'results'/f'{track}.csv')
        search = res[res.metric == 'accuracy']
        assert set(search.level) == {'sub', 'super'} and search.value.between(0, 1).all(), track
        assert set(res.run) <= set(pd.read_csv(out/'results'/'runs.csv').run), track        # every row names its run
    runs = pd.read_csv(out/'results'/'runs.csv')
    assert runs.data.str.startswith('birds, ').all() and set(runs.experiment) == set(TRACKS)
    assert not runs.selection.str.contains('train 3 folds').any()      # 4 folds: the selection trains on 2
    md = (out/'report.md').read_text()
    assert md.startswith('# audio_latent: results on birds') and 'content fingerprint' in md and 'so it has none' in md
    assert 'human listeners' not in md and 'PANNs' not in md                    # ESC-50's published numbers do not apply
    for rep in ('mfcc', 'yamnet/selected', 'vae/patch/128', 'head/proxy', 'triplet/model1'):
        assert rep in md, rep
    assert not (reports/'results'/'baseline.csv').exists()            # nothing written where ESC-50's results go
    # a track named: only that one reruns (the others' keys are unchanged)
    r = report('run', '--profile', 'tiny', '--dataset', collection, '--reports', reports, '--tracks', 'baseline', '--force')
    assert r.returncode == 0 and 'running 02b_baseline.ipynb' in r.stdout and 'running 04' not in r.stdout, r.stdout[-2000:]


def test_report_refuses_a_bad_catalogue_before_any_work(collection, tmp_path):
    bad = _variant(collection, tmp_path, lambda rows: rows.assign(filename=['gone.wav'] + rows.filename[1:].tolist()), 'gone.csv')
    r = report('run', '--profile', 'tiny', '--dataset', bad, '--reports', tmp_path/'reports')
    assert r.returncode == 2 and 'gone.wav: missing' in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path/'reports').exists()                           # nothing written
