"""Metric learning end to end: the profiles, the notebook on real clips (tiny profile), the thesis setting on real clips.
The losses, miners and the triplet score are unit-tested by hand-computed cases in nbs/05a_losses and nbs/05_metric_learning."""
import json
import numpy as np, pandas as pd

from audio_latent.retrieval import RESULT_COLUMNS, DISTANCES
from conftest import assert_figure


def test_cpu_profile_settings():
    "The cpu profile: 3 seeds, 5 outer folds, the epoch candidates of each learned family, the stand-in marked."
    from audio_latent.metric_learning import load_config, representation_name
    cfg = load_config('cpu'); runs = {representation_name(r): r for r in cfg.runs()}
    assert cfg.seeds == [0, 1, 2] and cfg.folds == [1, 2, 3, 4, 5]
    assert set(runs) == {'head/proxy', 'proxy/tcnn', 'contrastive/tcnn', 'triplet/model1'}
    for name in ('head/proxy', 'proxy/tcnn', 'contrastive/tcnn'):
        assert len(runs[name]['candidates']) >= 2 and runs[name]['schedule_epochs'] == max(runs[name]['candidates'])
    assert 'one seed' in runs['triplet/model1']['stand_in']


def test_notebook_tiny_profile_on_real_clips(tiny_reports):
    reports = tiny_reports
    df = pd.read_csv(reports/'results'/'metric_learning.csv')
    runs = pd.read_csv(reports/'results'/'runs.csv', keep_default_na=False)
    runs = runs[runs.experiment == 'metric_learning']
    assert list(df.columns) == RESULT_COLUMNS and df.value.notna().all() and np.isfinite(df.value).all()
    reps = set(df.representation)
    assert {'head/proxy', 'proxy/tcnn', 'contrastive/tcnn', 'triplet/model1'} <= reps
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
    # the stand-ins say so
    thesis_recs = runs[runs.representation.str.startswith(('triplet/', 'contrastive/resnet'))]
    assert len(thesis_recs) == 10 and (thesis_recs.stand_in.str.len() > 0).all()
    acc = df[(df.metric == 'accuracy') & (df.level == 'sub') & (df.protocol == 'cross-fold')]
    assert acc.value.between(0, 1).all() and set(acc.representation) >= {'head/proxy', 'triplet/model1'}
    assert set(df.protocol) >= {'loo', 'cross-fold'}
    ts = df[df.metric == 'triplet_score']
    # the appendix-A grid: 9 distances x 3 scalers for the thesis model, with its tie rate
    grid = {f'{d}-{s}' for d in DISTANCES for s in ('MinMaxScaler', 'StandardScaler', 'Normalizer')}
    assert set(ts[ts.representation == 'triplet/model1'].distance) == grid
    ties = df[df.metric == 'triplet_tie_rate']
    assert set(ties[ties.representation == 'triplet/model1'].distance) == grid and ties.value.between(0, 1).all()
    # a learned model's dense continuous embedding: every coordinate differs, so hamming ties every triplet
    assert ties[(ties.distance == 'hamming-StandardScaler') & (ties.representation == 'triplet/model1')].value.min() > 0.99
    assert ts.value.between(0, 1).all()
    assert ((df.metric == 'classifier_accuracy') & (df.distance == 'logreg')).sum() == 1
    preds = pd.read_csv(reports/'predictions'/'metric_learning.csv')
    assert set(preds[preds.representation == 'head/proxy'].seed) == {0}
    for fig in ('metric_learning_accuracy.png', 'metric_learning_folds.png', 'metric_learning_triplet_scores.png'):
        assert_figure(reports/'figures'/fig)


def _two_thesis_steps(run:dict, data_dir:str) -> dict:
    """In a fresh process (so each model's memory is returned and the test process stays small): one epoch of exactly two
    batches of the thesis's size on real clips, every clip embedded; seconds per step and peak memory."""
    import resource, time
    from audio_latent.data import esc50_catalogue, load_esc50_audio
    from audio_latent.features import logmel
    from audio_latent.metric_learning import train_fold, epoch_batches
    cat = esc50_catalogue(data_dir)
    n_classes = 2 * run['batch_size'] // 8  # 2 batches of the thesis's size, whole P x K groups for the pk sampler
    # training clips: fold 1 of the first classes (8 each); held out: one fold-2 clip of 8 classes
    cat = pd.concat([cat[(cat.fold == 1) & (cat.target < n_classes)].sort_values(['target', 'stem']),
                     cat[(cat.fold == 2) & (cat.target < 8)].sort_values(['target', 'stem']).groupby('target').head(1)])
    audio, cat = load_esc50_audio(cat.reset_index(drop=True))
    L, y, fold_of = logmel(audio), cat.target.to_numpy(), cat.fold.to_numpy()
    steps = len(epoch_batches(y[fold_of == 1], run['batch_size'], np.random.default_rng(0), run['sampler']))
    t0 = time.perf_counter()
    out = train_fold({**run, 'epochs': 1}, {'logmel': L}, y, fold_of, train_folds=[1], seed=0)
    E = out['embeddings_1']
    return dict(steps=steps, s_per_step=(time.perf_counter() - t0) / 2, n=len(y), shape=E.shape,
                finite=bool(np.isfinite(E).all()), spread=float(E.std(0).max()), loss=out['loss'].tolist(),
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def test_thesis_profile_runs_as_written_for_every_model():
    """`-p profile thesis` on real clips: every appendix-A model at the thesis's own input size, batch size, learning
    rate, loss and sampler takes two optimiser steps (one epoch of exactly two batches) and embeds every clip, so a user
    with a GPU knows the full setting runs as written. Each model runs in a fresh process, so the test process stays
    small; prints seconds per step and peak memory (ResNet50 with triplets at the thesis's batch of 128 peaks near
    15 GB on a CPU: `make test` needs about 16 GB of free memory)."""
    import multiprocessing, os
    from concurrent.futures import ProcessPoolExecutor
    from audio_latent.metric_learning import (load_config, representation_name, THESIS_TRIPLET_MODELS,
                                              THESIS_CONTRASTIVE_MODELS)
    runs = [r for r in load_config('thesis').runs() if r['family'] == 'thesis']
    assert sorted(representation_name(r) for r in runs) == sorted(
        [f'triplet/{m}' for m in THESIS_TRIPLET_MODELS] + [f'contrastive/{m}' for m in THESIS_CONTRASTIVE_MODELS])
    assert all(r['epochs'] == 100 and r['learning_rate'] == 1e-5 and not r['stand_in'] for r in runs)
    facts = {}
    # a fresh (non-daemonic: the clip decoder starts processes of its own) process per model
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'), max_tasks_per_child=1) as pool:
        for r in runs:
            f = facts[representation_name(r)] = pool.submit(_two_thesis_steps, r, os.environ['AUDIO_LATENT_DATA']).result()
            name = representation_name(r)
            assert f['steps'] == 2 and f['shape'][0] == f['n'] and f['finite'] and f['spread'] > 0, (name, f)
            assert len(f['loss']) == 1 and np.isfinite(f['loss']).all(), (name, f)
    print('\nthesis profile on this machine (seconds per optimiser step incl. graph build, peak MB of the process):',
          {k: (round(v['s_per_step'], 1), round(v['peak_mb'])) for k, v in facts.items()})
