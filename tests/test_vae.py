"Integration test of nbs/04_vae.ipynb: the tiny profile on real ESC-50 clips, through papermill."
import numpy as np
import pandas as pd


def test_vae_tiny_profile(notebook_runner):
    reports = notebook_runner('04_vae.ipynb', profile='tiny', retrain=True)
    res = pd.read_csv(reports/'results'/'vae.csv')
    assert set(res.experiment) == {'vae'}
    reps = {'vae/patch/128', 'pca/patch/128'} | {f'vae/thesis/{d}' for d in (32, 64, 128, 256)}  # appendix C's latent sizes
    assert set(res.representation) == reps  # the two VAEs and the linear reference
    assert {'cross-fold', 'loo'} <= set(res.protocol) and {'sub', 'super'} <= set(res.level)
    acc = res[(res.metric == 'accuracy') & (res.protocol == 'cross-fold') & (res.level == 'sub')]
    assert len(acc) == len(reps) * 2 and acc.value.between(0, 1).all()  # representations x distances
    probe = res[res.metric.isin(['logreg_accuracy', 'svm_accuracy'])]
    assert len(probe) == len(reps) * 2 * 2 and (probe.distance == 'none').all()  # representations x levels x probes
    assert np.isfinite(res.value).all()

    tr = pd.read_csv(reports/'training'/'vae.csv')
    assert {'fold', 'epoch', 'split', 'total', 'kl', 'recon'} <= set(tr.columns)
    assert np.isfinite(tr[['total', 'kl', 'recon']].to_numpy()).all()
    train = tr[(tr.split == 'train') & (tr.representation == 'vae/patch/128')]
    assert sorted(train.fold.unique()) == [1, 2]
    for fold, g in train.groupby('fold'):  # the training loss decreases over the epochs of every fold
        g = g.sort_values('epoch')
        assert g.total.iloc[-1] < g.total.iloc[0], g

    for name in ['vae_loss_traces.png', 'vae_accuracy.png', 'vae_reconstructions_patch_128.png',
                 'vae_reconstructions_thesis_128.png']:
        assert (reports/'figures'/name).stat().st_size > 0
    pred = pd.read_csv(reports/'predictions'/'vae.csv')
    assert len(pred) == len(reps) * 2 * (20 + 50)  # representations x distances x (20 cross-fold + 50 loo queries)
