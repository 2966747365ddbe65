"""The archive-scale on-disk index through its command line, at small scale: one run prints every figure and writes the CSV."""
import subprocess, sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args, cwd=ROOT):
    return subprocess.run([sys.executable, '-m', 'audio_latent.ondisk', 'bench', *args], capture_output=True, text=True,
                          cwd=cwd, env={**__import__('os').environ, 'OMP_WAIT_POLICY': 'PASSIVE'})


def test_bench_small_prints_every_figure_and_writes_csv(tmp_path):
    out = tmp_path/'ondisk.csv'
    r = _bench('--n', '5000', '--folder', str(tmp_path/'files'), '--out', str(out), '--n-tune', '30', '--n-test', '50',
               '--factory', 'PCAR64,IVF64,PQ8x4')
    assert r.returncode == 0, r.stderr[-2000:]
    for figure in ('build:', 'size on disk:', 'peak memory (max RSS):', 'p50', 'p99', 'recall@10', 'bars:'):
        assert figure in r.stdout, (figure, r.stdout[-2000:])
    df = pd.read_csv(out)
    assert set(df.phase) == {'tune', 'test', 'test-cold'} and df[df.phase == 'tune'].chosen.sum() == 1
    test = df[df.phase == 'test'].iloc[0]
    chosen = df[(df.phase == 'tune') & df.chosen].iloc[0]
    assert (test.nprobe, test.shortlist, test.exact) == (chosen.nprobe, chosen.shortlist, chosen.exact)
    assert test.recall_at_10 > 0.5 and test.peak_rss_build > 0 and test.vectors_bytes == 5000*1024*2
    assert test.codes_bytes == 5000*256 and test.exact <= test.shortlist  # PCAR256,SQ8: 256 bytes a vector
    index = tmp_path/'files'/'segments-n5000-seed0'/'index'
    assert sorted(p.name for p in index.iterdir()) == ['codec.faiss', 'codes.bin', 'index.faiss', 'lists.ivfdata',
                                                       'meta.json', 'vectors.f16']
    # a second run refuses to replace the files: one line, exit code 2, no traceback
    r2 = _bench('--n', '5000', '--folder', str(tmp_path/'files'), '--out', str(out))
    assert r2.returncode == 2 and '--overwrite' in r2.stderr and 'Traceback' not in r2.stderr


def test_bench_bad_n_exits_2():
    r = _bench('--n', '10')
    assert r.returncode == 2 and r.stderr.strip() == '--n 10: give at least 1000 vectors.'
