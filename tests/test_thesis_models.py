"""The second thesis's appendix-A models at equal compute: the notebook on real clips (tiny profile), the thesis's own
setting on real clips, and the committed report's coverage of every thesis table. The loss pieces, the step trainer
and the budget conversion are unit-tested in nbs/05b_thesis_models."""
import json, re
import numpy as np, pandas as pd

from audio_latent.retrieval import RESULT_COLUMNS, DISTANCES, GAIN_METRICS
from conftest import ROOT, assert_figure


def test_notebook_tiny_profile_on_real_clips(tiny_reports):
    from audio_latent.thesis_models import THESIS_REPRESENTATIONS
    reports = tiny_reports
    df = pd.read_csv(reports/'results'/'thesis_models.csv')
    runs = pd.read_csv(reports/'results'/'runs.csv', keep_default_na=False)
    runs = runs[runs.experiment == 'thesis_models']
    assert list(df.columns) == RESULT_COLUMNS and np.isfinite(df.value).all()
    # every appendix-A model, every seed of the profile, each recorded with its chosen learning rate per outer fold
    assert set(df.representation) == set(THESIS_REPRESENTATIONS)
    for name in THESIS_REPRESENTATIONS:
        assert sorted(df[df.representation == name].seed.unique()) == [0, 1], name
        rec = runs[runs.representation == name]
        assert sorted(rec.seed.astype(int)) == [0, 1] and rec.run.nunique() == 2, name
        assert (rec.n_candidates.astype(int) == 2).all() and rec.selection.str.contains('inner').all(), name
        assert all(json.loads(c)['1'] in (1e-4, 1e-3) for c in rec.chosen), rec.chosen.tolist()
        assert (rec.stand_in.str.len() > 0).all() and (rec.uses_labels.astype(str) == str(name.startswith('triplet/'))).all()
    assert set(zip(df.run, df.representation, df.seed.astype(int))) <= set(zip(runs.run, runs.representation, runs.seed.astype(int)))
    # the appendix-A grid for every model
    grid = {f'{d}-{s}' for d in DISTANCES for s in ('MinMaxScaler', 'StandardScaler', 'Normalizer')}
    ts = df[df.metric == 'triplet_score']
    # (and 'selected': the pair each outer fold chose on its training folds' triplets, scored on its test fold)
    assert all(set(ts[ts.representation == n].distance) == grid | {'selected'} for n in THESIS_REPRESENTATIONS)
    # every seed's model against its own untrained start: accuracy of the start, paired gain inside its interval
    gain = df[df.metric.isin(GAIN_METRICS)].pivot_table(index=['representation', 'seed'], columns='metric', values='value')
    assert len(gain) == 2 * len(THESIS_REPRESENTATIONS) and gain.untrained_accuracy.between(0, 1).all()
    assert ((gain.gain_ci_low <= gain.gain_over_untrained + 1e-12) & (gain.gain_over_untrained <= gain.gain_ci_high + 1e-12)).all()
    assert ts.value.between(0, 1).all()
    acc = df[(df.metric == 'accuracy') & (df.level == 'sub') & (df.protocol == 'cross-fold') & (df.k == 1)]
    assert acc.value.between(0, 1).all() and set(acc.representation) == set(THESIS_REPRESENTATIONS)
    # the learning curve: fold 1, seed 0, untrained (step 0) and at half, one and two budgets (2 steps -> 1, 2, 4)
    curves = pd.read_csv(reports/'training'/'thesis_models.csv')
    assert set(curves.representation) == set(THESIS_REPRESENTATIONS)
    assert all(sorted(g.step) == [0, 1, 2, 4] for _, g in curves.groupby('representation'))
    assert (curves[curves.step == 0].cpu_s == 0).all() and curves[curves.step == 0].learning_rate.isna().all()
    assert curves.accuracy.between(0, 1).all() and (curves.fold == 1).all() and (curves.seed == 0).all()
    # the model at the budget's step on the curve is the table's fold-1 model: the same held-out accuracy
    preds = pd.read_csv(reports/'predictions'/'thesis_models.csv')
    p = preds[(preds.seed == 0) & (preds.distance == 'cosine') & (preds.protocol == 'cross-fold')]
    for name, g in curves[curves.step == 2].groupby('representation'):
        q = p[p.representation == name]
        q = q[q.stem.str.split('-').str[0].astype(int) == 1]   # an ESC-50 name starts with its fold
        assert len(q) and abs((q.target == q.predicted).mean() - g.accuracy.iloc[0]) < 1e-9, name
    assert_figure(reports/'figures'/'thesis_models_learning_curves.png')


def _thesis_steps(run:dict, data_dir:str) -> dict:
    """In a fresh process (so each model's memory is returned and the test process stays small): two optimiser steps
    at the thesis's batch size on real clips, then every clip embedded; seconds per step and peak memory."""
    import resource, time
    import keras
    from audio_latent.data import esc50_catalogue, load_esc50_audio
    from audio_latent.features import logmel
    from audio_latent.encoders import build_model
    from audio_latent.metric_learning import run_inputs, model_input_shape, make_augment, embed
    from audio_latent.thesis_models import train_steps, make_loss
    cat = esc50_catalogue(data_dir)
    n_classes = 2 * run['batch_size'] // 8  # 2 batches of the thesis's size, whole P x K groups for the pk sampler
    cat = pd.concat([cat[(cat.fold == 1) & (cat.target < n_classes)].sort_values(['target', 'stem']),
                     cat[(cat.fold == 2) & (cat.target < 8)].sort_values(['target', 'stem']).groupby('target').head(1)])
    audio, cat = load_esc50_audio(cat.reset_index(drop=True))
    y, train = cat.target.to_numpy(), cat.fold.to_numpy() == 1
    X = run_inputs(run, {'logmel': logmel(audio)}, train)
    keras.utils.set_random_seed(0)
    encoder = build_model(run['model'], model_input_shape(run, X))
    t0 = time.perf_counter()
    h = train_steps(encoder, X[train], y[train], make_loss(run, encoder.output_shape[-1]), 2, run['learning_rate'],
                    run['batch_size'], make_augment(run, run['input']), 0, run['sampler'])
    E = embed(encoder, X)
    return dict(s_per_step=(time.perf_counter() - t0) / 2, n=len(y), shape=E.shape, loss=h['loss'].tolist(),
                finite=bool(np.isfinite(E).all()), spread=float(E.std(0).max()),
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def test_thesis_profile_runs_as_written_for_every_model():
    """`-p profile thesis` on real clips: every appendix-A model at the thesis's own input size, batch size, learning
    rate, loss and sampler takes two optimiser steps and embeds every clip, so a user with a GPU knows the full setting
    runs as written. Each model runs in a fresh process; prints seconds per step and peak memory (ResNet50 with
    triplets at the thesis's batch of 128 peaks near 15 GB on a CPU: `make test` needs about 16 GB of free memory)."""
    import multiprocessing, os
    from concurrent.futures import ProcessPoolExecutor
    from audio_latent.metric_learning import representation_name
    from audio_latent.thesis_models import load_config, THESIS_REPRESENTATIONS
    cfg = load_config('thesis')
    runs = cfg.runs()
    assert sorted(representation_name(r) for r in runs) == sorted(THESIS_REPRESENTATIONS)
    assert cfg.learning_rates == [1e-5] and cfg.budget_cpu_s is None and not cfg.stand_in
    assert all(r['epochs'] == 100 and r['steps'] is None for r in runs)
    assert {representation_name(r): r['batch_size'] for r in runs}['triplet/model1'] == 32
    facts = {}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'), max_tasks_per_child=1) as pool:
        for r in runs:
            name = representation_name(r)
            f = facts[name] = pool.submit(_thesis_steps, {**r, 'learning_rate': cfg.learning_rates[0]},
                                          os.environ['AUDIO_LATENT_DATA']).result()
            assert f['shape'][0] == f['n'] and f['finite'] and f['spread'] > 0, (name, f)
            assert len(f['loss']) == 2 and np.isfinite(f['loss']).all(), (name, f)
    print('\nthesis profile on this machine (seconds per optimiser step incl. model start-up, peak MB of the process):',
          {k: (round(v['s_per_step'], 1), round(v['peak_mb'])) for k, v in facts.items()})


def test_cost_command_projects_a_model_of_the_tiny_profile():
    """`python -m audio_latent.thesis_models cost` as a user runs it: times each kind of call of one model on real
    clips and prints its projection (the module's entry point must come after every function it calls)."""
    import os, subprocess, sys
    out = subprocess.run([sys.executable, '-m', 'audio_latent.thesis_models', 'cost', '--profile', 'tiny', '--models', 'triplet/model1'],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, 'PYTHONHASHSEED': '0'})
    assert out.returncode == 0, out.stderr[-3000:]
    table = out.stdout.splitlines()
    assert table[0].startswith('profile tiny, fold 1'), out.stdout
    header, row = table[1].split(), table[2].split()
    assert row[0] == 'triplet/model1' and len(row) == len(header) + 1, out.stdout
    got = dict(zip(header, map(float, row[1:])))
    # tiny: 1 fold, 2 rates -> 2 selection runs; 2 seeds, one of them the curve run; an untrained start per seed
    assert (got['n_select'], got['n_final'], got['n_curve'], got['n_untrained']) == (2, 1, 1, 2), got
    assert got['projected_s'] >= got['select_s'] * 2 + got['final_s'] > 0, got
    bad = subprocess.run([sys.executable, '-m', 'audio_latent.thesis_models', 'cost', '--profile', 'tiny', '--models', 'triplet/model9'],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and '--models triplet/model9' in bad.stderr, bad.stderr[-2000:]


THESIS_TABLES = [('2', f'A.{i}') for i in range(1, 11)] + [('1', t) for t in ('4.4', '4.5', '4.7', '4.8', 'C.1', 'C.2', 'C.3', 'C.4')]

def test_committed_report_has_rows_of_ours_in_every_thesis_table():
    """The report `make report` built and the repository holds (not the tiny run): each of these thesis tables has at
    least one number of ours beside the thesis's."""
    md = (ROOT/'reports'/'report.md').read_text()
    sections = re.split(r'\n### ', md)
    missing = []
    for thesis, table in THESIS_TABLES:
        sec = [s for s in sections if s.startswith(f'Thesis {thesis}, table {table}\n')]
        assert len(sec) == 1, (thesis, table)
        body = sec[0].split('\n## ')[0]                           # the section ends where the next part of the report starts
        lines = [l for l in body.split('\n') if l.startswith('|')]
        header = [c.strip() for c in lines[0].strip('|').split('|')]
        ours = [[c.strip() for c in l.strip('|').split('|')][header.index('ours')] for l in lines[2:]]
        if not any(ours): missing.append(f'{thesis}/{table}')
    assert not missing, f"thesis tables without a number of ours in reports/report.md: {missing}"
