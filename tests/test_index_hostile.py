"""An index never empties or lies: hostile but plausible use of `audio-latent` on a tiny archive of real ESC-50 clips
(log-mel embedder): an unmounted drive, a tampered vectors cache, outputs aimed at inputs, FIFOs, silent and too short
files, broken old-format indexes, control characters in paths, and user mistakes that must be one message, exit 2."""
import csv, io, json, os, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def _copy(folder: Path, paths) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in paths:
        dest = folder/Path(p).name; shutil.copyfile(p, dest); out.append(dest)
    return out


def _main(capsys, *args):
    "Run the command in this process: (exit status, stdout, stderr)."
    from audio_latent.cli import main
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _cli(*args, timeout=120, **env):
    "Run the command as a process (for what could hang it)."
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=str(ROOT)); e.update(env)
    return subprocess.run([sys.executable, '-m', 'audio_latent.cli', *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=e, timeout=timeout)


@pytest.fixture(scope='module')
def clips(catalogue):
    "4 real clips of 4 classes."
    return list(catalogue.groupby('category').head(1).path.iloc[:4])


@pytest.fixture
def indexed(tmp_path, clips, capsys):
    "An archive of the 4 clips and its log-mel index."
    files = _copy(tmp_path/'arch', clips)
    rc, out, err = _main(capsys, 'index', tmp_path/'arch', '--index', tmp_path/'idx', '--model', 'logmel', '--quiet')
    assert rc == 0, err
    return dict(arch=tmp_path/'arch', idx=tmp_path/'idx', files=files)


def _n(idx) -> int:
    from audio_latent.store import check_store
    return check_store(idx)['n']


# 1 -- an unmounted drive does not empty the index ----------------------------------------------------------------------

def test_sync_of_an_empty_mount_point_is_refused(indexed, capsys):
    for f in indexed['files']: f.unlink()  # the folder is there, its files are not: an unmounted drive's mount point
    rc, out, err = _main(capsys, 'sync', '--index', indexed['idx'], '--quiet')
    assert rc == 2 and 'would drop 4 of the 4' in err and 'mounted' in err and err.count('\n') == 1, err
    assert _n(indexed['idx']) == 4
    rc, out, err = _main(capsys, 'sync', '--index', indexed['idx'], '--quiet', '--allow-drop')
    assert rc == 0, err
    assert _n(indexed['idx']) == 0


def test_sync_dropping_more_than_half_is_refused(indexed, capsys):
    for f in indexed['files'][:3]: f.unlink()
    rc, out, err = _main(capsys, 'sync', '--index', indexed['idx'], '--quiet')
    assert rc == 2 and 'would drop 3 of the 4' in err and _n(indexed['idx']) == 4
    rc, out, err = _main(capsys, 'sync', '--index', indexed['idx'], '--quiet', '--keep-removed')  # marking is not dropping
    assert rc == 0 and _n(indexed['idx']) == 4, err


def test_forced_reindex_of_an_empty_folder_is_refused(indexed, tmp_path, capsys):
    (tmp_path/'empty').mkdir()
    rc, out, err = _main(capsys, 'index', tmp_path/'empty', '--index', indexed['idx'], '--model', 'logmel', '--force', '--quiet')
    assert rc == 2 and 'would drop 4 of the 4' in err and 'mounted' in err, err
    assert _n(indexed['idx']) == 4
    rc, out, err = _main(capsys, 'index', tmp_path/'empty', '--index', indexed['idx'], '--model', 'logmel', '--force',
                         '--quiet', '--allow-drop')
    assert rc == 0 and _n(indexed['idx']) == 0, err


# 2 -- the vectors cache is checked against the store -------------------------------------------------------------------

def test_a_permuted_vectors_cache_is_detected_and_rebuilt(indexed):
    from audio_latent.search import AudioIndex
    from audio_latent.store import Store
    with Store(indexed['idx'], readonly=True) as s, s.snapshot():
        b = s.build(); X = s.vectors(b['id'], int(b['model']['dim']))
    AudioIndex.load(indexed['idx'])  # writes the cache
    cache, = indexed['idx'].glob('vectors-*.npy')
    with open(cache, 'wb') as f: np.save(f, X[[1, 2, 3, 0]])  # same shape, same dtype, rows of other files
    with pytest.warns(UserWarning, match=cache.name):
        ix = AudioIndex.load(indexed['idx'])
    assert np.array_equal(np.asarray(ix.vectors), X)
    D, I = ix.search(X, ix.identity, k=1)
    assert list(I[:, 0]) == [0, 1, 2, 3]
    again = AudioIndex.load(indexed['idx'])  # the rebuilt cache is trusted again
    assert np.array_equal(np.asarray(again.vectors), X)


# 3 -- outputs never overwrite the index or an input --------------------------------------------------------------------

def test_outputs_aimed_at_the_index_or_an_input_are_refused(indexed, tmp_path, capsys):
    q, other = indexed['files'][0], indexed['files'][1]
    db, q_bytes, o_bytes = indexed['idx']/'index.db', q.read_bytes(), other.read_bytes()
    db_bytes = db.read_bytes()
    for args, says in [(['--format', 'csv', '--out', db], 'inside the index folder'),
                       (['--format', 'csv', '--out', indexed['idx']/'hits.csv'], 'inside the index folder'),
                       (['--format', 'csv', '--out', q], 'one of the inputs'),
                       (['--html', other], 'one of the inputs'),
                       (['--format', 'csv', '--out', tmp_path], 'is a folder')]:
        rc, out, err = _main(capsys, 'search', q, '--index', indexed['idx'], *args)
        assert rc == 2 and says in err and err.count('\n') == 1, (args, err)
    assert db.read_bytes() == db_bytes and q.read_bytes() == q_bytes and other.read_bytes() == o_bytes
    assert _n(indexed['idx']) == 4
    rc, out, err = _main(capsys, 'search', q, '--index', indexed['idx'], '--format', 'csv', '--out', tmp_path/'hits.csv')
    assert rc == 0 and len(pd.read_csv(tmp_path/'hits.csv')) == 4, err
    assert not list(tmp_path.glob('.tmp*'))


# 4 -- FIFOs are named, never opened ------------------------------------------------------------------------------------

def test_a_fifo_in_the_archive_or_as_the_query_does_not_hang(tmp_path, clips):
    _copy(tmp_path/'arch', clips[:2])
    os.mkfifo(tmp_path/'arch'/'pipe.wav')
    r = _cli('index', tmp_path/'arch', '--index', tmp_path/'idx', '--model', 'logmel', '--quiet', timeout=60)
    assert r.returncode == 0 and 'pipe.wav' in r.stderr and 'FIFO' in r.stderr, r.stderr
    assert _n(tmp_path/'idx') == 2
    r = _cli('search', tmp_path/'arch'/'pipe.wav', '--index', tmp_path/'idx', timeout=60)
    assert r.returncode == 2 and 'FIFO' in r.stderr and 'Traceback' not in r.stderr, r.stderr


# 5 -- silent and too short recordings are indexed as such and never returned -------------------------------------------

def test_silent_and_too_short_files_get_their_own_status(tmp_path, clips, capsys):
    arch = tmp_path/'arch'; _copy(arch, clips[:3])
    sf.write(arch/'silence.wav', np.zeros(5*16000, np.float32), 16000)
    sf.write(arch/'one.wav', np.zeros(1, np.float32), 16000)
    sf.write(arch/'short.wav', (0.3*np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 16000)
    rc, out, err = _main(capsys, 'index', arch, '--index', tmp_path/'idx', '--model', 'logmel', '--quiet')
    assert rc == 0, err
    assert 'silence.wav (silent)' in out and 'one.wav (too_short)' in out and 'short.wav (too_short)' in out, out
    from audio_latent.store import Store
    with Store(tmp_path/'idx', readonly=True) as s, s.snapshot():
        st = s.files(s.build()['id']).set_index('path').status
    assert st['silence.wav'] == 'silent' and st['one.wav'] == st['short.wav'] == 'too_short'
    assert (st[[Path(c).name for c in clips[:3]]] == 'ok').all()
    rc, out, err = _main(capsys, 'search', arch/Path(clips[0]).name, '--index', tmp_path/'idx', '-k', '10', '--format', 'csv')
    assert rc == 0, err
    got = pd.read_csv(io.StringIO(out)).path
    assert sorted(got) == sorted(Path(c).name for c in clips[:3])
    rc, out, err = _main(capsys, 'search', arch/Path(clips[0]).name, '--index', tmp_path/'idx', '-k', '10', '--spans', '1',
                         '--format', 'csv')
    assert rc == 0 and set(pd.read_csv(io.StringIO(out)).path) <= {Path(c).name for c in clips[:3]}, out


# 6 -- migrate validates first and leaves nothing behind -----------------------------------------------------------------

def _v1(folder: Path, n=4, dup=False, nan=False, drop_column=None):
    folder.mkdir(parents=True)
    X = np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32); X /= np.linalg.norm(X, axis=1, keepdims=True)
    if nan: X[2, 3] = np.nan
    files = pd.DataFrame(dict(path=[f'f{i}.wav' for i in range(n)], sha256=[f'{i:064x}' for i in range(n)], seconds=5.,
                              label=''))
    if dup: files.loc[n - 1, 'path'] = 'f0.wav'
    if drop_column: files = files.drop(columns=[drop_column])
    files.to_csv(folder/'files.csv', index=False); np.save(folder/'vectors.npy', X)
    (folder/'index.json').write_text(json.dumps(dict(format='audio_latent.search/1', root=str(folder),
                                                     model=dict(name='m', version='1', pooling='', dim=8))))


@pytest.mark.parametrize('bad, says', [(dict(dup=True), 'more than once'), (dict(nan=True), 'NaN'),
                                       (dict(drop_column='sha256'), 'lacks the column')])
def test_migrate_refuses_duplicates_nan_and_missing_columns(tmp_path, capsys, bad, says):
    _v1(tmp_path/'old', **bad)
    rc, out, err = _main(capsys, 'migrate', '--index', tmp_path/'old')
    assert rc == 2 and says in err and err.count('\n') == 1, err
    assert sorted(p.name for p in (tmp_path/'old').iterdir()) == ['files.csv', 'index.json', 'vectors.npy']


def test_migrate_counts_what_it_stored(tmp_path, capsys):
    _v1(tmp_path/'old')
    rc, out, err = _main(capsys, 'migrate', '--index', tmp_path/'old')
    assert rc == 0 and 'Migrated 4 recording(s)' in out and _n(tmp_path/'old') == 4, err
    assert not [p for p in (tmp_path/'old').iterdir() if p.name.startswith('.')]


# 7 -- CSV quotes control characters ------------------------------------------------------------------------------------

def test_csv_quotes_paths_with_control_characters(tmp_path, clips, capsys):
    arch = tmp_path/'arch'; _copy(arch, clips[:2])
    shutil.copyfile(clips[2], arch/'a\rb.flac'); shutil.copyfile(clips[3], arch/'c\td.flac')
    rc, out, err = _main(capsys, 'index', arch, '--index', tmp_path/'idx', '--model', 'logmel', '--quiet')
    assert rc == 0, err
    rc, out, err = _main(capsys, 'search', arch/'a\rb.flac', '--index', tmp_path/'idx', '--format', 'csv')
    assert rc == 0, err
    rows = list(csv.reader(io.StringIO(out, newline='')))
    assert len(rows) == 5 and {len(r) for r in rows} == {len(rows[0])}, rows
    paths = [r[rows[0].index('path')] for r in rows[1:]]
    assert 'a\rb.flac' in paths and 'c\td.flac' in paths and '"a\rb.flac"' in out and '"c\td.flac"' in out
    rc, out, err = _main(capsys, 'search', arch/'a\rb.flac', '--index', tmp_path/'idx', '--csv')  # the one-clip path
    assert rc == 0 and '"a\rb.flac"' in out, out


# 8 -- mistakes are one message and exit 2 -------------------------------------------------------------------------------

def test_user_mistakes_are_one_message(indexed, tmp_path, capsys):
    q = indexed['files'][0]
    (tmp_path/'afile').write_text('x')
    (tmp_path/'latin1.txt').write_bytes(b'caf\xe9.wav\n')
    (tmp_path/'labels.csv').write_bytes(b'filename,label\ncaf\xe9.wav,x\n')
    (tmp_path/'zero').mkdir(); (tmp_path/'zero'/'index.db').write_bytes(b'')
    cases = [(['index', indexed['arch'], '--index', tmp_path/'i2', '--model', 'os:getcwd'], 'not an embedder'),
             (['search', q, '--index', indexed['idx'], '--model', 'os:getcwd'], 'not an embedder'),
             (['search', q, '--index', indexed['idx'], '--start', 'inf'], '--start must be a finite'),
             (['search', q, '--index', indexed['idx'], '--end', 'inf'], '--end must be a finite'),
             (['search', q, '--index', tmp_path/'afile'], 'is a file'),
             (['index', indexed['arch'], '--index', tmp_path/'afile', '--model', 'logmel'], 'is a file'),
             (['search', q, '--index', indexed['idx'], '--out', tmp_path], 'is a folder'),
             (['search', '--list', tmp_path/'latin1.txt', '--index', indexed['idx']], 'latin1.txt is not UTF-8'),
             (['add', q, '--labels', tmp_path/'labels.csv', '--index', indexed['idx'], '--quiet'], 'labels.csv is not UTF-8'),
             (['search', q, '--index', tmp_path/'zero'], 'is empty (0 bytes)'),
             (['info', '--index', tmp_path/'zero'], 'is empty (0 bytes)'),
             (['add', q, '--index', tmp_path/'zero'], 'is empty (0 bytes)'),
             (['sync', '--index', tmp_path/'zero'], 'is empty (0 bytes)')]
    for args, says in cases:
        rc, out, err = _main(capsys, *args)
        assert rc == 2 and says in err and err.strip().count('\n') == 0 and 'Traceback' not in err, (args, err)
    assert (tmp_path/'zero'/'index.db').stat().st_size == 0  # not quietly made into an empty database


def test_no_results_is_said_not_an_empty_dataframe(tmp_path, clips, capsys):
    (tmp_path/'empty').mkdir()
    rc, out, err = _main(capsys, 'index', tmp_path/'empty', '--index', tmp_path/'idx', '--model', 'logmel', '--quiet')
    assert rc == 0, err
    for extra in ([], ['-k', '3', '--format', 'table']):
        rc, out, err = _main(capsys, 'search', clips[0], '--index', tmp_path/'idx', *extra)
        assert 'Empty DataFrame' not in out + err and 'no results' in out, (extra, out, err)


def test_an_unwritable_cache_home_hints_at_AUDIO_LATENT_CACHE(tmp_path, clips):
    "The YAMNet query path caches its numpy weights under the cache folder: a home that cannot hold one is named."
    from audio_latent.update import index_folder
    _copy(tmp_path/'arch', clips[:2])
    index_folder(tmp_path/'arch', tmp_path/'idx', model='yamnet', progress=False, segment_window=0)
    (tmp_path/'home').write_text('a file, not a folder')
    env = {k: v for k, v in os.environ.items() if k != 'AUDIO_LATENT_CACHE'}
    r = subprocess.run([sys.executable, '-m', 'audio_latent.cli', 'search', str(tmp_path/'arch'/Path(clips[0]).name),
                        '--index', str(tmp_path/'idx')], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env=dict(env, HOME=str(tmp_path/'home'), PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL='2'))
    assert r.returncode == 2 and 'AUDIO_LATENT_CACHE' in r.stderr and 'Traceback' not in r.stderr, r.stderr


# 9 -- a query's memory is flat in its length ----------------------------------------------------------------------------

def _peak_search_kb(query, idx) -> int:
    "Peak resident memory (KB) of a process that searches `idx` with `query` through the command."
    code = ("import resource, sys; from audio_latent.cli import main; "
            f"rc = main(['search', {str(query)!r}, '--index', {str(idx)!r}, '-k', '1']); "
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.split('PEAK')[-1].split()[0])


def test_a_long_query_is_streamed_not_held(tmp_path, clips, catalogue, capsys):
    "A 12-minute query costs about what a 2-minute one does (YAMNet; before: 1.07 GB at 2 min, 3.9 GB at 20 min)."
    _copy(tmp_path/'arch', clips[:2])
    rc, _, err = _main(capsys, 'index', tmp_path/'arch', '--index', tmp_path/'idx', '--quiet')
    assert rc == 0, err
    paths = list(catalogue.path[:150])
    for minutes in (2, 12):   # both past LONG_SECONDS, so both streamed
        with sf.SoundFile(tmp_path/f'q{minutes}.flac', 'w', 16000, 1, 'PCM_16') as f:
            n = i = 0
            while n < minutes*60*16000:
                y, _ = sf.read(paths[i % len(paths)], dtype='float32'); f.write(y); n += len(y); i += 1
    short, long = _peak_search_kb(tmp_path/'q2.flac', tmp_path/'idx'), _peak_search_kb(tmp_path/'q12.flac', tmp_path/'idx')
    assert long < short + 250_000, f"a 12-minute query peaked at {long/1e6:.2f} GB against {short/1e6:.2f} GB for 2 minutes"
