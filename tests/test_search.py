"""Search by example on real ESC-50 clips: index 200, query with held-out dog barks, skip/refuse/add, CLI, Dask."""
import json, os, subprocess, sys, warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]

N_INDEX, QUERY_FOLD = 200, 5


MODEL = 'yamnet'  # the default model, from ../shared/models/yamnet: a missing model fails these tests, loudly


def _selection(catalogue):
    """200 clips of folds 1-4 (all 32 dogs + 168 of the other 49 classes) and the 8 dogs of fold 5 as queries.

    Folds keep the fragments of one Freesound recording together, so no query has a sibling fragment in the index."""
    pool = catalogue[catalogue.fold != QUERY_FOLD]
    dogs = pool[pool.category == 'dog']
    rest = pool[pool.category != 'dog']
    rng = np.random.default_rng(0)
    per_class = [g.iloc[rng.permutation(len(g))] for _, g in rest.groupby('target')]
    n_rest, picked, r = N_INDEX - len(dogs), [], 0
    while len(picked) < n_rest:  # round-robin over classes: 3 or 4 clips of each
        for g in per_class:
            if r < len(g) and len(picked) < n_rest: picked.append(g.index[r])
        r += 1
    index = pd.concat([dogs, rest.loc[picked]]).sort_index()
    queries = catalogue[(catalogue.fold == QUERY_FOLD) & (catalogue.category == 'dog')]
    return index, queries


def _link_folder(folder: Path, paths) -> Path:
    "A folder of symlinks to real clips (nothing is copied)."
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths: (folder/Path(p).name).symlink_to(p)
    return folder


@pytest.fixture(scope='module')
def esc_index(tmp_path_factory, catalogue):
    from audio_latent.update import index_folder
    index_clips, queries = _selection(catalogue)
    assert len(index_clips) == N_INDEX and (index_clips.category == 'dog').sum() == 32
    tmp = tmp_path_factory.mktemp('esc')
    arch = _link_folder(tmp/'archive', index_clips.path)
    index = index_folder(arch, tmp/'index', model=MODEL, labels='esc50', progress=False)
    return dict(index=index, path=tmp/'index', archive=arch, queries=queries, clips=index_clips)


def test_dog_barks_find_dogs(esc_index):
    from audio_latent.search import search_index
    idx = esc_index['index']
    assert len(idx) == N_INDEX and idx.kind == 'flat' and idx.labelled
    n_dogs = []
    for q in esc_index['queries'].path:
        res = search_index(idx, q, k=10)
        assert list(res['rank']) == list(range(1, 11)) and res.distance.is_monotonic_increasing
        assert not res.is_query.any()  # the query is not in the index
        n_dogs.append(int((res.label == 'dog').sum()))
    chance = 10*32/N_INDEX  # 1.6 dogs in a random top-10
    print(f"{MODEL}: dogs in the top-10 of each of the {len(n_dogs)} held-out dog queries: {n_dogs} (chance {chance:.1f})")
    assert np.mean(n_dogs) >= 6 and np.median(n_dogs) >= 6, n_dogs  # the criterion: a dog bark finds mostly dogs


def test_index_stores_model_and_hashes(esc_index):
    from audio_latent.data import sha256_file
    from audio_latent.store import Store
    with Store(esc_index['path'], readonly=True) as s, s.snapshot():
        build = s.build()
        assert {'name', 'version', 'pooling', 'dim', 'spec'} <= set(build['model'])
        assert build['model']['spec'] == MODEL and build['state'] == 'live' and s.count(build['id']) == N_INDEX
        files = s.files(build['id']); X = s.vectors(build['id'], build['model']['dim'])
    row = files.iloc[7]
    assert row.sha256 == sha256_file(esc_index['archive']/row.path)
    assert row['size'] == os.stat(esc_index['archive']/row.path).st_size and row.status == 'ok'
    assert set(files.label) <= set(esc_index['clips'].category) and (files.label == 'dog').sum() == 32
    assert X.shape == (N_INDEX, build['model']['dim']) and np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-4)


def test_wrong_model_refused(esc_index, tmp_path):
    from audio_latent.search import AudioIndex, ModelMismatchError, search_index
    idx = AudioIndex.load(esc_index['path'])
    q = esc_index['queries'].path.iloc[0]
    with pytest.raises(ModelMismatchError, match='cannot be compared'):  # the other real embedder
        search_index(idx, q, model='logmel')
    with pytest.raises(ModelMismatchError, match='differ in pooling'):
        idx.search(idx.vectors[:1], dict(idx.identity, pooling='max'))
    with pytest.raises(ModelMismatchError, match='differ in version'):
        idx.search(idx.vectors[:1], dict(idx.identity, version='0'))


def test_unreadable_skipped_and_bad_queries(tmp_path, catalogue):
    from audio_latent.ingest import QueryError
    from audio_latent.search import search_index
    from audio_latent.update import index_folder
    arch = _link_folder(tmp_path/'arch', catalogue.path.iloc[:5])
    (arch/'broken.wav').write_bytes(b'RIFF\x00\x00\x00\x00WAVEnot really')
    (arch/'README.txt').write_text('not audio, not reported')
    sf.write(arch/'stereo_44k.wav', 0.2*np.random.default_rng(0).standard_normal((44100*2, 2)), 44100)
    sf.write(arch/'short.ogg', 0.2*np.random.default_rng(1).standard_normal(4000), 16000)  # padded to one patch
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        idx = index_folder(arch, tmp_path/'idx', model='logmel', progress=False)
    assert len(idx) == 7 and (tmp_path/'idx'/'index.db').exists()
    assert [Path(p).name for p, _ in idx.last_update['problems']] == ['broken.wav']
    assert any('broken.wav' in str(m.message) for m in w)
    sf.write(tmp_path/'silence.wav', np.zeros(32000), 16000)
    sf.write(tmp_path/'short.wav', 0.1*np.ones(8000), 16000)
    for query, says in [(tmp_path/'silence.wav', 'silent'), (tmp_path/'short.wav', 'at least one patch'),
                        (arch/'README.txt', 'not an audio file'), (arch/'broken.wav', 'not an audio file')]:
        with pytest.raises(QueryError, match=says): search_index(tmp_path/'idx', query)


_CALLS = []

def _counting_factory():
    from audio_latent.embedders import LogMelStatsEmbedder
    class Counting(LogMelStatsEmbedder):
        spec = 'counting-test'
        def embed(self, waveforms):
            _CALLS.append(len(waveforms)); return super().embed(waveforms)
    return Counting()


def test_add_embeds_only_new_files(tmp_path, catalogue):
    from audio_latent.embedders import register_embedder
    from audio_latent.search import AudioIndex, search_index
    from audio_latent.update import add_to_index, index_folder
    register_embedder('counting-test', _counting_factory)
    arch = _link_folder(tmp_path/'arch', catalogue.path.iloc[:6])
    idx = index_folder(arch, tmp_path/'idx', model='counting-test', labels='esc50', progress=False)
    assert sum(_CALLS) == 6
    _CALLS.clear()
    _link_folder(arch/'new', catalogue.path.iloc[6:9])
    (arch/'copy_of_first.flac').symlink_to(catalogue.path.iloc[0])  # same content under another name
    before = AudioIndex.load(tmp_path/'idx').vectors
    idx = add_to_index(tmp_path/'idx', arch, labels='esc50', progress=False)
    assert sum(_CALLS) == 3 and len(idx) == 9
    assert idx.last_update['already_indexed'] == 7  # 6 old + the copy
    np.testing.assert_array_equal(AudioIndex.load(tmp_path/'idx').vectors[:6], before)
    res = search_index(tmp_path/'idx', catalogue.path.iloc[7], k=3)
    assert res.is_query.iloc[0] and res.path.iloc[0] == 'new/' + Path(catalogue.path.iloc[7]).name


def test_dask_local_cluster_gives_the_same_vectors(tmp_path, catalogue):
    from distributed import Client, LocalCluster
    from audio_latent.update import index_folder
    arch = _link_folder(tmp_path/'arch', catalogue.path.iloc[:5])
    (arch/'broken.flac').write_bytes(b'fLaC nope')
    plain = index_folder(arch, tmp_path/'plain', model='logmel', batch_size=2, progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
         Client(cluster) as client:
        viadask = index_folder(arch, tmp_path/'dask', model='logmel', batch_size=2, dask_client=client, progress=False)
    assert list(viadask.files.path) == list(plain.files.path) and len(plain) == 5
    np.testing.assert_allclose(viadask.vectors, plain.vectors, atol=1e-6)
    assert [Path(p).name for p, _ in viadask.last_update['problems']] == ['broken.flac']


@pytest.mark.parametrize('ann', ['hnsw', 'ivf'])
def test_approximate_above_threshold(tmp_path, catalogue, ann):
    from audio_latent.search import AudioIndex
    from audio_latent.update import add_to_index, index_folder
    arch = _link_folder(tmp_path/'arch', catalogue.path.iloc[:30])
    idx = index_folder(arch, tmp_path/'idx', model='logmel', ann_threshold=20, ann_kind=ann, search_effort=64,
                       progress=False)
    assert idx.kind == ann
    exact = idx.vectors @ idx.vectors[:5].T
    _, I = AudioIndex.load(tmp_path/'idx').search(idx.vectors[:5], idx.identity, k=1)
    assert (I[:, 0] == exact.argmax(0)).all()
    assert [p.name for p in (tmp_path/'idx').glob('ann-*.faiss')] == [f'ann-{idx.token}.faiss']
    _link_folder(arch, catalogue.path.iloc[30:33])
    idx = add_to_index(tmp_path/'idx', arch, progress=False)
    assert len(idx) == 33 and idx.kind == ann
    _, I = idx.search(idx.vectors[30:33], idx.identity, k=1)
    assert list(I[:, 0]) == [30, 31, 32] and idx._faiss_n == 33


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    return subprocess.run([sys.executable, '-m', 'audio_latent.cli', *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_cli(tmp_path, catalogue):
    assert (Path(sys.executable).parent/'audio-latent').exists(), "console script missing: pip install -e ."
    cat = catalogue[catalogue.category.isin(['dog', 'rain', 'church_bells'])]
    arch = _link_folder(tmp_path/'arch', cat.path.iloc[:-1])
    (arch/'broken.wav').write_bytes(b'garbage')
    r = _cli('index', arch, '--index', tmp_path/'idx', '--model', 'logmel', '--labels', 'esc50', '--quiet')
    assert r.returncode == 0, r.stderr
    assert f'Indexed {len(cat) - 1} file(s)' in r.stdout and 'broken.wav' in r.stderr
    r = _cli('search', cat.path.iloc[-1], '--index', tmp_path/'idx', '-k', '5')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 6 and lines[0].split()[:4] == ['rank', 'distance', 'path', 'label']
    r = _cli('add', cat.path.iloc[-1], '--index', tmp_path/'idx', '--quiet')
    assert r.returncode == 0 and 'Added 1 file(s)' in r.stdout, r.stderr
    r = _cli('index', arch, '--index', tmp_path/'idx', '--model', 'logmel')
    assert r.returncode == 2 and 'already holds an index' in r.stderr
    sf.write(tmp_path/'silence.wav', np.zeros(20000), 16000)
    r = _cli('search', tmp_path/'silence.wav', '--index', tmp_path/'idx')
    assert r.returncode == 2 and 'silent' in r.stderr and 'Traceback' not in r.stderr
    r = _cli('info', '--index', tmp_path/'idx')
    assert r.returncode == 0 and f'{len(cat)} recordings' in r.stdout


# -- spans and batch search (issue 13) ------------------------------------------------------------------------------

def _long_archive(folder: Path, clips, n_files: int, per_file: int):
    "Long recordings of real clips one after another; the truth: file, clip, start_s, end_s."
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for f in range(n_files):
        ys, at = [], 0.
        for p in clips[f*per_file:(f+1)*per_file]:
            y, sr = sf.read(p, dtype='float32'); assert sr == 16000
            ys.append(y); rows.append(dict(file=f'long{f}.flac', clip=p, start_s=at, end_s=at + len(y)/sr)); at += len(y)/sr
        sf.write(folder/f'long{f}.flac', np.concatenate(ys), 16000, subtype='PCM_16')
    return pd.DataFrame(rows)


def test_yamnet_span_search_finds_clips_inside_long_recordings(tmp_path, catalogue):
    "Real YAMNet: 3 recordings of 8 fold-5 clips (40 s); each of 6 clips, searched by its own file, is found at its span."
    from audio_latent.search import AudioIndex, search_many
    from audio_latent.update import index_folder
    clips = list(catalogue[catalogue.fold == 5].sample(24, random_state=0).path)
    truth = _long_archive(tmp_path/'arch', clips, 3, 8)
    idx = index_folder(tmp_path/'arch', tmp_path/'idx', model='yamnet', progress=False)
    from audio_latent.ingest import SEGMENT_WINDOW as W, segment_hop, segment_starts, window_span_s
    from audio_latent.data import n_patches
    assert idx.segment_settings == dict(window=W, hop=segment_hop(W))
    assert len(idx.segments) == 3*len(segment_starts(n_patches(40*16000), W, segment_hop(W)))
    picked = truth.iloc[[1, 6, 9, 12, 18, 23]]
    res = search_many(idx, list(picked['clip']), k=2, spans=1)
    top = res[res['rank'] == 1].set_index('query')
    for r in picked.itertuples():
        h = top.loc[r.clip]
        assert h.path == r.file and h.start_s < r.end_s and h.end_s > r.start_s, (r, h)
        assert h.end_s - h.start_s == pytest.approx(window_span_s(np.array([0]), W, W)[1][0])
    # the whole-file vectors do not depend on the windows: the clip-level search is the one of before
    plain = index_folder(tmp_path/'arch', tmp_path/'plain', model='yamnet', segment_window=0, progress=False)
    assert len(plain.segments) == 0
    np.testing.assert_array_equal(np.asarray(plain.vectors), np.asarray(AudioIndex.load(tmp_path/'idx').vectors))


def test_long_recording_windows_streamed_into_the_store(tmp_path, catalogue):
    "A 3-minute recording (streamed: over LONG_SECONDS) gets the same windows as when embedded whole, committed with its row."
    from audio_latent.ingest import segment_starts, LONG_SECONDS
    from audio_latent.update import index_folder
    from audio_latent.store import Store, check_store
    from audio_latent.data import n_patches
    truth = _long_archive(tmp_path/'arch', list(catalogue.path.iloc[:36]), 1, 36)
    assert truth.end_s.max() == 180. > LONG_SECONDS
    idx = index_folder(tmp_path/'arch', tmp_path/'idx', model='logmel', progress=False)
    with Store(tmp_path/'idx', readonly=True) as s:
        staged = s.con.execute('SELECT count(*) FROM segments WHERE file IS NULL').fetchone()[0]
    assert staged == 0 and check_store(tmp_path/'idx')['n'] == 1
    from audio_latent.ingest import embed_files
    whole = embed_files([tmp_path/'arch'/'long0.flac'], 'logmel', long_seconds=1e9, segments=idx.segment_settings)
    a, b, V = whole['segments'][0]
    np.testing.assert_allclose(idx.segments.start_s, a)
    np.testing.assert_allclose(idx.segment_vectors, V, atol=1e-4)
    assert len(a) <= len(segment_starts(n_patches(180*16000), **idx.segment_settings)) and len(a) > 300  # silent ones left out


def test_cli_batch_search_csv_json_and_spans(tmp_path, catalogue):
    cat = catalogue[catalogue.fold == 4]
    truth = _long_archive(tmp_path/'arch', list(cat.path.iloc[:6]), 1, 6)  # long0.flac: 30 s
    _link_folder(tmp_path/'arch', cat.path.iloc[6:10])
    r = _cli('index', tmp_path/'arch', '--index', tmp_path/'idx', '--model', 'logmel', '--labels', 'esc50', '--quiet')
    assert r.returncode == 0, r.stderr
    q1, q2 = cat.path.iloc[6], cat.path.iloc[11]  # q1 is indexed, q2 is not
    r = _cli('search', q1, q2, '--index', tmp_path/'idx', '-k', '2', '--format', 'csv')
    assert r.returncode == 0, r.stderr
    from io import StringIO
    df = pd.read_csv(StringIO(r.stdout), keep_default_na=False, na_values=[''])
    assert df.columns.tolist() == ['query', 'query_start_s', 'query_end_s', 'rank', 'path', 'start_s', 'end_s', 'distance',
                                   'label', 'note', 'span_rank', 'is_query']
    assert df['query'].tolist() == [q1, q1, q2, q2] and df['rank'].tolist() == [1, 2, 1, 2]
    assert df.path.iloc[0] == Path(q1).name and df.distance.iloc[0] == 0 and bool(df.is_query.iloc[0])
    assert df.start_s.tolist()[:1] == [0.] and df.end_s.iloc[0] == 5. and df.query_start_s.isna().all()
    assert df.label.iloc[0] == cat.category.iloc[6] and not df.is_query.iloc[2:].any()
    # a span of the long recording as the query, JSON into a file, with a list file and a bad query among them
    (tmp_path/'list.txt').write_text(f'# queries\n{tmp_path}/arch/long0.flac\n\n{tmp_path}/nothing.wav\n')
    r = _cli('search', '--list', tmp_path/'list.txt', '--index', tmp_path/'idx', '-k', '1', '--spans', '2',
             '--start', truth.start_s.iloc[3], '--end', truth.end_s.iloc[3], '--format', 'json', '--out', tmp_path/'out.json')
    assert r.returncode == 1 and 'nothing.wav' in r.stderr and 'does not exist' in r.stderr, r.stderr
    rows = json.loads((tmp_path/'out.json').read_text())
    assert [(x['rank'], x['span_rank'], x['path']) for x in rows] == [(1, 1, 'long0.flac'), (1, 2, 'long0.flac')]
    assert rows[0]['query_start_s'] == 15. and rows[0]['query_end_s'] == 20.
    assert rows[0]['start_s'] < 20. and rows[0]['end_s'] > 15.  # the best span overlaps the true one
    assert rows[0]['distance'] <= rows[1]['distance'] and (rows[1]['end_s'] <= rows[0]['start_s'] or rows[1]['start_s'] >= rows[0]['end_s'])
    # bad options: exit 2, one line naming the option
    r = _cli('search', q1, '--index', tmp_path/'idx', '--start', '3', '--end', '2')
    assert r.returncode == 2 and '--start (3 s) must be before --end' in r.stderr and 'Traceback' not in r.stderr
    r = _cli('search', q1, '--index', tmp_path/'idx', '--start', '9', '--spans', '1')
    assert r.returncode == 2 and '--start 9 s is past the end' in r.stderr
    r = _cli('search', '--index', tmp_path/'idx')
    assert r.returncode == 2 and 'at least one query' in r.stderr
    # one query without the new options: the table of before
    r = _cli('search', q2, '--index', tmp_path/'idx', '-k', '3')
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:4] == ['rank', 'distance', 'path', 'label']
