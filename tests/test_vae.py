"Integration test of nbs/04_vae.ipynb: the tiny profile on real ESC-50 clips, through papermill."
import json
import numpy as np
import pandas as pd
from conftest import assert_figure


def test_vae_tiny_profile(tiny_reports):
    reports = tiny_reports
    res = pd.read_csv(reports/'results'/'vae.csv')
    assert set(res.experiment) == {'vae'}
    reps = {'vae/patch/128', 'pca/patch/128', *(f'vae/thesis/{d}' for d in (32, 64, 128, 256))}  # learned VAE, linear reference, stand-ins (every appendix-C size)
    assert set(res.representation) == reps
    assert np.isfinite(res.value).all() and res.run.notna().all()
    # the learned model runs the tiny profile's seeds; the deterministic reference and the stand-ins run seed 0
    seeds = res.groupby('representation').seed.agg(lambda s: sorted(set(s)))
    assert seeds['vae/patch/128'] == [0, 1] and all(seeds[r] == [0] for r in reps - {'vae/patch/128'})
    assert {'cross-fold', 'loo'} <= set(res.protocol) and {'sub', 'super'} <= set(res.level)
    assert {'map_at_r', 'r_precision', 'accuracy_ci_low'} <= set(res.metric)
    pairs = res[['representation', 'seed']].drop_duplicates()
    acc = res[(res.metric == 'accuracy') & (res.protocol == 'cross-fold') & (res.level == 'sub')]
    assert len(acc) == len(pairs) * 2 and acc.value.between(0, 1).all()  # (representation, seed) x distances
    probe = res[res.metric.isin(['logreg_accuracy', 'svm_accuracy'])]
    assert len(probe) == len(pairs) * 2 * 2 and (probe.distance == 'none').all()  # x levels x probes

    # provenance: every row's run is recorded once per (representation, seed), with its selection and stand-in status
    runs = pd.read_csv(reports/'results'/'runs.csv', keep_default_na=False)
    runs = runs[runs.experiment == 'vae']
    assert set(res.run) == set(runs.run) and len(runs) == len(pairs)
    assert runs.set_index('run').loc[res.run, 'representation'].tolist() == res.representation.tolist()
    for r in runs.itertuples():
        if r.representation.startswith('vae/thesis/'):
            assert r.stand_in == f"thesis architecture at width 1/16, 1 epoch, latent {r.representation.split('/')[-1]}"
        else:
            assert r.stand_in == ''
    patch = runs[runs.representation == 'vae/patch/128']
    for r in patch.itertuples():
        chosen = json.loads(r.chosen)
        assert set(chosen) == {'1', '2'} and set(chosen.values()) <= {2, 3}, chosen  # the tiny candidates, per outer fold
        assert r.n_candidates == 2 and 'inner' in r.selection
    assert patch.chosen.nunique() == 1  # selection (seed 0) is shared by all seeds

    tr = pd.read_csv(reports/'training'/'vae.csv')
    assert {'representation', 'seed', 'stage', 'fold', 'epoch', 'split', 'total', 'kl', 'recon'} <= set(tr.columns)
    assert np.isfinite(tr[['total', 'kl', 'recon']].to_numpy()).all()
    final = tr[(tr.split == 'train') & (tr.representation == 'vae/patch/128') & (tr.stage == 'final')]
    assert sorted(final.seed.unique()) == [0, 1] and sorted(final.fold.unique()) == [1, 2]
    for (seed, fold), g in final.groupby(['seed', 'fold']):  # trained for the chosen epochs; the loss decreases
        g = g.sort_values('epoch')
        assert g.epoch.max() == json.loads(patch.chosen.iloc[0])[str(fold)]
        assert g.total.iloc[-1] < g.total.iloc[0], g

    for name in ['vae_loss_traces.png', 'vae_accuracy.png', 'vae_reconstructions_patch_128.png',
                 'vae_reconstructions_thesis_256.png']:  # the thesis model is shown at its largest latent size
        assert_figure(reports/'figures'/name)
    # how far the stand-in is from the thesis: the scale curve (tiny: width 1/32, 1 epoch) and the step cost
    scale = pd.read_csv(reports/'training'/'vae_thesis_scale.csv')
    assert scale[['width', 'epochs', 'latent_dim', 'outer_fold']].values.tolist() == [[0.03125, 1, 32, 1]]
    assert scale.accuracy.between(0, 1).all() and scale.run.notna().all()
    cost = pd.read_csv(reports/'benchmarks'/'vae_thesis_step_seconds.csv')
    assert cost.width.tolist() == [0.03125] and (cost.step_seconds > 0).all() and (cost.parameters > 0).all()
    assert_figure(reports/'figures'/'vae_thesis_scale.png')
    pred = pd.read_csv(reports/'predictions'/'vae.csv')
    assert set(zip(pred.representation, pred.seed)) == set(zip(pairs.representation, pairs.seed)) and set(pred.run) <= set(runs.run)  # every seed
    assert len(pred) == len(pairs) * 2 * 2 * 20  # (representation, seed) x distances x protocols x 20 queries (folds 1 and 2)
    sel = pd.read_csv(reports/'training'/'vae_selection.csv', dtype={'candidate': str})   # the epoch selection's inner curves
    assert set(sel.representation) == {'vae/patch/128'} and sel.groupby('outer_fold').chosen.sum().eq(1).all()
