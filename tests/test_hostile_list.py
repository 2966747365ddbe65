"tests/HOSTILE.md, the project's list of hostile cases: at least 100, each naming a test that exists."
import re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_hostile_case_names_an_existing_test():
    listed = re.findall(r'^- `(tests/[^`]+)`', (ROOT/'tests'/'HOSTILE.md').read_text(), flags=re.M)
    assert len(listed) >= 100, f"{len(listed)} hostile cases listed; the project keeps at least 100"
    assert len(set(listed)) == len(listed), 'a case listed twice'
    files = sorted({c.split('::')[0] for c in listed})
    out = subprocess.run([sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider', *files],
                         cwd=ROOT, capture_output=True, text=True).stdout
    collected = {l.strip() for l in out.splitlines() if '::' in l}
    missing = [c for c in listed if c not in collected]
    assert not missing, f"listed but no such test: {missing}"
