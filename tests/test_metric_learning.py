"""Metric learning end to end: the profiles and the notebook on real clips (tiny profile). The second thesis's own
models are tests/test_thesis_models.py.
The losses, miners and the triplet score are unit-tested by hand-computed cases in nbs/05_losses and nbs/05_metric_learning."""
import json
import numpy as np, pandas as pd

from audio_latent.retrieval import RESULT_COLUMNS, DISTANCES
from conftest import assert_figure


def test_cpu_profile_settings():
    "The cpu profile: 2 seeds, 5 outer folds, the epoch candidates of each learned family, the stand-in marked."
    from audio_latent.metric_learning import load_config, representation_name
    cfg = load_config('cpu'); runs = {representation_name(r): r for r in cfg.runs()}
    assert cfg.seeds == [0, 1] and cfg.folds == [1, 2, 3, 4, 5]
    assert set(runs) == {'head/proxy', 'proxy/tcnn', 'contrastive/tcnn'}
    for name in ('head/proxy', 'proxy/tcnn', 'contrastive/tcnn'):
        assert len(runs[name]['candidates']) >= 2 and runs[name]['schedule_epochs'] == max(runs[name]['candidates'])


def test_notebook_tiny_profile_on_real_clips(tiny_reports):
    reports = tiny_reports
    df = pd.read_csv(reports/'results'/'metric_learning.csv')
    runs = pd.read_csv(reports/'results'/'runs.csv', keep_default_na=False)
    runs = runs[runs.experiment == 'metric_learning']
    assert list(df.columns) == RESULT_COLUMNS and df.value.notna().all() and np.isfinite(df.value).all()
    reps = set(df.representation)
    assert {'head/proxy', 'proxy/tcnn', 'contrastive/tcnn'} <= reps
    # every row's run is recorded in runs.csv, under the same representation and seed
    assert set(df.run) <= set(runs.run), set(df.run) - set(runs.run)
    key = set(zip(runs.run, runs.representation, runs.seed.astype(int)))
    rows = df[df.distance != 'logreg']
    assert set(zip(rows.run, rows.representation, rows.seed.astype(int))) <= key
    # learned families: one result set and one record per seed 0, 1, 2, with the chosen epochs per outer fold
    for name, labels in (('head/proxy', True), ('proxy/tcnn', True), ('contrastive/tcnn', False)):
        assert sorted(df[df.representation == name].seed.unique()) == [0, 1, 2], name
        rec = runs[runs.representation == name]
        assert sorted(rec.seed.astype(int)) == [0, 1, 2] and rec.run.nunique() == 3, name
        assert (rec.uses_labels.astype(str) == str(labels)).all(), name
        assert (rec.n_candidates.astype(int) >= 2).all() and rec.selection.str.contains('inner').all(), name
        chosen = [json.loads(c) for c in rec.chosen]
        assert all(set(c) == {'1'} and c['1'] in (1, 2) for c in chosen), chosen
    acc = df[(df.metric == 'accuracy') & (df.level == 'sub') & (df.protocol == 'cross-fold')]
    assert acc.value.between(0, 1).all() and set(acc.representation) >= {'head/proxy', 'proxy/tcnn'}
    assert set(df.protocol) >= {'loo', 'cross-fold'}
    ts = df[df.metric == 'triplet_score']
    # the appendix-A grid: 9 distances x 3 scalers for every model, with its tie rate
    grid = {f'{d}-{s}' for d in DISTANCES for s in ('MinMaxScaler', 'StandardScaler', 'Normalizer')}
    assert set(ts[ts.representation == 'proxy/tcnn'].distance) == grid | {'selected'}   # + the training-fold choice
    ties = df[df.metric == 'triplet_tie_rate']
    assert set(ties[ties.representation == 'proxy/tcnn'].distance) == grid | {'selected'} and ties.value.between(0, 1).all()
    # a learned model's dense continuous embedding: every coordinate differs, so hamming ties every triplet
    assert ties[(ties.distance == 'hamming-StandardScaler') & (ties.representation == 'proxy/tcnn')].value.min() > 0.99
    assert ts.value.between(0, 1).all()
    assert ((df.metric == 'classifier_accuracy') & (df.distance == 'logreg')).sum() == 1
    preds = pd.read_csv(reports/'predictions'/'metric_learning.csv')
    assert set(preds[preds.representation == 'head/proxy'].seed) == {0, 1, 2}   # every seed (the paired tests pair them)
    sel = pd.read_csv(reports/'training'/'metric_learning_selection.csv', dtype={'candidate': str})
    assert {'head/proxy', 'proxy/tcnn', 'contrastive/tcnn'} <= set(sel.representation) and set(sel.parameter) == {'epochs'}
    assert sel.groupby(['representation', 'outer_fold']).chosen.sum().eq(1).all() and sel.inner_map_at_r.between(0, 1).all()
    for fig in ('metric_learning_accuracy.png', 'metric_learning_folds.png', 'metric_learning_triplet_scores.png'):
        assert_figure(reports/'figures'/fig)
