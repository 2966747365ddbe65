"Metric learning: the losses on hand-computed cases, and the notebook end to end (tiny profile, real clips)."
import numpy as np, pandas as pd, pytest

from audio_latent.retrieval import RESULT_COLUMNS, DISTANCES


def test_triplet_loss_is_zero_when_margin_met_and_hinge_otherwise():
    from audio_latent.losses import triplet_margin_loss
    assert float(triplet_margin_loss([1.0, 0.5], [1.3, 2.0], margin=0.2)) == 0.0
    assert float(triplet_margin_loss([1.0], [0.9], margin=0.2)) == pytest.approx(0.3, abs=1e-6)


def test_batch_hard_miner_picks_hand_computed_pairs():
    from audio_latent.losses import batch_hard_miner
    x = np.array([0.0, 1.0, 1.5, 4.0], 'float32'); d = np.abs(x[:, None] - x[None])
    a, p, n = (t.numpy().tolist() for t in batch_hard_miner(d, np.array([0, 0, 1, 1])))
    assert (a, p, n) == ([0, 1, 2, 3], [1, 0, 3, 2], [2, 2, 1, 1])


def test_nt_xent_matches_numpy():
    from audio_latent.losses import nt_xent_loss
    rng = np.random.default_rng(0); z1, z2, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), 0.3
    z = np.concatenate([z1, z2]); z /= np.linalg.norm(z, axis=1, keepdims=True); s = z @ z.T / t
    np.fill_diagonal(s, -np.inf); target = np.r_[np.arange(5, 10), np.arange(5)]
    expected = np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(10), target])
    assert float(nt_xent_loss(z1, z2, t)) == pytest.approx(expected, abs=1e-4)


def test_notebook_tiny_profile_on_real_clips(notebook_runner):
    reports = notebook_runner('05_metric_learning.ipynb', profile='tiny')
    df = pd.read_csv(reports/'results'/'metric_learning.csv')
    assert list(df.columns) == RESULT_COLUMNS and df.value.notna().all()
    reps = set(df.representation)
    assert {'head/proxy', 'proxy/tcnn', 'contrastive/tcnn', 'triplet/model1', 'yamnet/mean'} <= reps
    acc = df[(df.metric == 'accuracy') & (df.level == 'sub') & (df.protocol == 'cross-fold')]
    assert acc.value.between(0, 1).all() and set(acc.representation) >= {'head/proxy', 'triplet/model1'}
    ts = df[df.metric == 'triplet_score']
    # the appendix-A grid: 9 distances x 3 scalers for the thesis model
    grid = set(ts[ts.representation == 'triplet/model1'].distance)
    assert grid == {f'{d}-{s}' for d in DISTANCES for s in ('MinMaxScaler', 'StandardScaler', 'Normalizer')}
    assert ts.value.between(0, 1).all()
    assert ((df.metric == 'classifier_accuracy') & (df.distance == 'logreg')).sum() == 1
    for fig in ('metric_learning_accuracy.png', 'metric_learning_folds.png', 'metric_learning_triplet_scores.png'):
        assert (reports/'figures'/fig).stat().st_size > 1000
