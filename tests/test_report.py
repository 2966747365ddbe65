"The report: every experiment notebook under the tiny profile through the report runner, then the report builder."
import pandas as pd, pytest
from audio_latent.report import (run_notebooks, build_report, load_results, compare_with_theses, thesis_coverage,
                                 load_run_plan, NotebookFailed)
from audio_latent.experiment import load_runs, RUN_COLUMNS
from audio_latent.retrieval import RESULT_COLUMNS


def test_every_thesis_table_has_rows_of_ours(tiny_reports):
    md = build_report(tiny_reports).read_text()
    assert (tiny_reports/'report.html').exists() and 'Run facts' in md
    results = load_results(tiny_reports)
    cmp = compare_with_theses(results)
    # every thesis table of an experiment that the plan ran must have rows of ours (McNemar needs both of its models)
    ran, reps = set(results.experiment), set(results.representation)
    both_models_ran = cmp.representation.map(lambda r: all(part in reps for part in r.split(' vs ')))
    needed = cmp[cmp.experiment.isin(ran) & ((cmp.experiment != 'mcnemar') | both_models_ran)]
    cov = thesis_coverage(needed)
    missing = cov[cov == 0]
    assert missing.empty, f"thesis tables without a matching row of ours: {list(missing.index)}"
    planned = {nb for nb, _ in load_run_plan(profile='tiny')}
    assert 'baseline' in ran and len(ran) >= len(planned)


def test_results_are_tidy_finite_and_traceable_to_their_runs(tiny_reports):
    build_report(tiny_reports)  # writes mcnemar.csv too
    runs = load_runs(tiny_reports)
    assert list(runs.columns) == RUN_COLUMNS and runs.run.is_unique
    files = [f for f in (tiny_reports/'results').glob('*.csv') if f.name != 'runs.csv']
    assert {f.stem for f in files} >= {'baseline', 'yamnet', 'mcnemar'}
    for f in files:
        df = pd.read_csv(f)
        assert list(df.columns) == RESULT_COLUMNS, f
        assert df.value.notna().all(), f
        # every row names the run that made it, and that run is recorded (a McNemar row names both of its runs)
        row_runs = set(r for rr in df.run for r in str(rr).split('+'))
        assert row_runs <= set(runs.run), (f, sorted(row_runs - set(runs.run))[:5])
    # every recorded run says how its settings were chosen
    assert (runs.selection.astype(str).str.len() > 0).all() and (runs.n_candidates >= 1).all()


def test_failing_notebook_is_named_and_earlier_results_kept(tmp_path):
    nbs = tmp_path/'plan.yaml'
    nbs.write_text("notebooks: {baseline: 02b_baseline.ipynb}\nbaseline:\n  broken: {n_mfcc: 20}\n")
    runs = tmp_path/'reports'/'runs'; runs.mkdir(parents=True)
    (runs/'02b_baseline.ipynb').write_text('earlier executed notebook')
    pd.DataFrame([{'notebook': '02b_baseline.ipynb', 'status': 'ok', 'wall_s': 29.1, 'parameters': '{}', 'key': 'k'}]).to_csv(runs/'run_facts.csv', index=False)
    facts = (runs/'run_facts.csv').read_bytes()
    with pytest.raises(NotebookFailed, match=r'02b_baseline.ipynb failed at cell'):
        run_notebooks('broken', params_file=nbs, reports=tmp_path/'reports')
    # a failure leaves the earlier run as it was (executed notebook and run facts); the failed copy is kept aside
    assert (runs/'02b_baseline.ipynb').read_text() == 'earlier executed notebook' and (runs/'run_facts.csv').read_bytes() == facts
    assert (runs/'failed'/'02b_baseline.ipynb').exists()


def test_only_rerun_keeps_the_other_notebooks_facts(tmp_path):
    plan = tmp_path/'plan.yaml'
    plan.write_text("notebooks: {baseline: 02b_baseline.ipynb, yamnet: 03_yamnet.ipynb}\n"
                    "baseline: {broken: {}}\nyamnet: {broken: {}}\n")
    runs = tmp_path/'reports'/'runs'; runs.mkdir(parents=True)
    pd.DataFrame([{'notebook': '03_yamnet.ipynb', 'status': 'ok', 'wall_s': 247.2, 'parameters': '{}'}]).to_csv(runs/'run_facts.csv', index=False)
    with pytest.raises(NotebookFailed):
        run_notebooks('broken', params_file=plan, reports=tmp_path/'reports', only=['02b_baseline.ipynb'])
    facts = pd.read_csv(runs/'run_facts.csv')
    assert facts.notebook.tolist() == ['03_yamnet.ipynb']  # the other row kept; a failure adds no row (it is logged under runs/failed/)
    assert facts.status.tolist() == ['ok'] and facts.wall_s.iloc[0] == 247.2
