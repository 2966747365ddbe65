"Foundation: the data layer on real clips, bad input, and the baseline notebook under papermill."
import warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, soundfile as sf

from audio_latent.data import (find_esc50, load_audio, load_esc50_audio, pad_to_patches,
                               subset_catalogue, AudioError)
from audio_latent.features import logmel, minmax_per_clip, stft_db_256
from audio_latent.retrieval import nearest_neighbours, RESULT_COLUMNS
from conftest import assert_figure


def test_catalogue_labels(catalogue):
    assert len(catalogue) == 2000
    first = catalogue.set_index('subclass')
    assert set(first.loc[101, 'subclass_name']) == {'Dog'} and set(first.loc[510, 'subclass_name']) == {'Hand saw'}
    assert set(first.loc[101, 'category']) == {'dog'} and set(first.loc[510, 'category']) == {'hand_saw'}
    assert catalogue.groupby('superclass').size().tolist() == [400]*5


def test_missing_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv('AUDIO_LATENT_DATA', str(tmp_path/'no-data-here'))
    monkeypatch.setenv('AUDIO_LATENT_CACHE', str(tmp_path/'cache'))
    import audio_latent.data as data
    assert find_esc50().name == 'ESC-50'       # settings.ini's data_path (../shared/data) still finds it
    monkeypatch.setattr(data, 'settings_data_path', lambda root=None: tmp_path/'nor-here')   # a project whose data_path is wrong
    with pytest.raises(FileNotFoundError) as e: find_esc50()
    msg = str(e.value)
    assert 'no-data-here' in msg and 'nor-here' in msg and str(tmp_path/'cache') in msg and 'AUDIO_LATENT_DATA' in msg and 'download_esc50' in msg


def test_real_clips_shapes_and_ranges(catalogue):
    sub = subset_catalogue(catalogue, n_per_class=2, classes=[0, 49])
    audio, kept = load_esc50_audio(sub, cache=False)
    assert audio.shape == (4, 80000) and audio.dtype == np.float32 and np.abs(audio).max() <= 1
    M = minmax_per_clip(logmel(pad_to_patches(audio)))
    assert M.shape == (4, 528, 64) and M.min() == 0 and M.max() == 1
    assert stft_db_256(audio).shape == (4, 256, 256)


def test_stereo_44k_and_bad_files_are_handled(catalogue, tmp_path):
    y = load_audio(catalogue.path[0])
    import soxr
    y44 = soxr.resample(y, 16000, 44100)
    sf.write(tmp_path/'stereo.wav', np.stack([y44, 0.5*y44], 1), 44100)
    back = load_audio(tmp_path/'stereo.wav')
    assert back.shape == (80000,) and np.corrcoef(back, 0.75*y)[0, 1] > 0.99
    (tmp_path/'empty.flac').write_bytes(b'')
    with pytest.raises(AudioError, match='empty.flac'): load_audio(tmp_path/'empty.flac')
    # a corrupt clip inside a catalogue: reported by name, skipped, the rest intact and aligned
    few = catalogue.iloc[:6].copy()
    bad = tmp_path/'5-999999-A-0.flac'; bad.write_bytes(b'fLaC but not really')
    few.loc[few.index[2], 'path'] = str(bad)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); audio, kept = load_esc50_audio(few, cache=False)
    assert len(kept) == 5 and bad.name not in set(kept.path.map(lambda p: Path(p).name))
    assert any(bad.name in str(m.message) for m in w)
    # a clip shorter than one patch is padded to whole patches
    assert pad_to_patches(y[:1000]).shape == (15600,)


def test_cross_fold_never_returns_same_fold_on_real_features(catalogue):
    sub = subset_catalogue(catalogue, n_per_class=5, classes=list(range(0, 50, 7)))
    audio, sub = load_esc50_audio(sub, cache=False)
    X = logmel(audio).mean(1)
    nn = nearest_neighbours(X, sub.fold.to_numpy(), 'cross-fold', 'cosine', k=5)
    assert (sub.fold.to_numpy()[nn] != sub.fold.to_numpy()[:, None]).all()
    nn_loo = nearest_neighbours(X, sub.fold.to_numpy(), 'loo', 'cosine', k=5)
    assert (nn_loo != np.arange(len(sub))[:, None]).all()


def test_baseline_notebook_tiny(tiny_reports):
    reports = tiny_reports
    df = pd.read_csv(reports/'results'/'baseline.csv')
    assert list(df.columns) == RESULT_COLUMNS
    assert set(df.protocol) == {'loo', 'cross-fold'} and set(df.level) == {'sub', 'super'}
    assert set(df.representation) == {'mfcc', 'random'} and df.value.between(0, 1).all()
    acc = df[(df.metric == 'accuracy') & (df.level == 'sub')].set_index(['representation', 'distance', 'protocol']).value
    # 10 classes: MFCC search is far above chance (0.1) even on 50 clips
    assert acc['mfcc', 'cosine', 'cross-fold'] > 0.2 and acc['mfcc', 'cosine', 'loo'] > 0.2
    assert_figure(reports/'figures'/'baseline_accuracy.png')
    assert (reports/'predictions'/'baseline.csv').exists()
