"""Every third-party package that audio_latent/ imports is declared, in requirements.txt (the pinned environment of
`make env`) and in settings.ini (what `pip install audio_latent` installs).

A module imported at the top of a module is needed to import the package: it must be in settings.ini `requirements`.
One imported only inside a function (lancedb and pyarrow, for `make bench-store`'s comparison) may instead be in
`bench_requirements` (the `bench` extra).

And the package's own modules import one another one way only: the graph of `audio_latent` imports (at module level
and inside functions) has no cycle, so each module can be read, and each notebook run, after the ones it imports.
"""
import ast, configparser, re, shlex, sys
import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> the distributions that provide it (PEP 503-normalised)
DISTRIBUTIONS = {'sklearn': {'scikit-learn'}, 'yaml': {'pyyaml'}, 'faiss': {'faiss-cpu', 'faiss-gpu', 'faiss'},
                 'tensorflow': {'tensorflow', 'tensorflow-cpu'}, 'soundfile': {'soundfile'}}


def normalise(name:str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def imports(source:str) -> dict[str, bool]:
    "Top-level third-party modules imported by `source`, each with whether an import of it sits at module level."
    tree, found = ast.parse(source), {}
    top = {id(n) for n in tree.body} | {id(c) for n in tree.body if isinstance(n, (ast.If, ast.Try)) for c in ast.walk(n)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Import): names = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.level == 0: names = [n.module]
        else: continue
        for name in names:
            m = name.split('.')[0]
            if m in sys.stdlib_module_names or m in ('__future__', 'audio_latent'): continue
            found[m] = found.get(m, False) or id(n) in top
    return found


def declared(specs:list[str]) -> set[str]:
    "Distribution names in requirement specifiers; `dask[distributed]` declares dask and distributed."
    out = set()
    for s in specs:
        m = re.match(r'\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?', s)
        if m and not s.lstrip().startswith('#'):
            out.add(normalise(m[1])); out |= {normalise(e) for e in (m[2] or '').split(',') if e.strip()}
    return out


def undeclared(found:dict[str, bool], required:set[str], optional:set[str]) -> list[str]:
    "The modules of `found` that no distribution in `required` (or `optional`, for imports inside functions) provides."
    missing = []
    for m, at_top in sorted(found.items()):
        provides = DISTRIBUTIONS.get(m, {normalise(m)})
        if not provides & (required if at_top else required | optional): missing.append(m)
    return missing


def package_imports() -> dict[str, bool]:
    found = {}
    for p in sorted((ROOT/'audio_latent').glob('*.py')):
        for m, top in imports(p.read_text()).items(): found[m] = found.get(m, False) or top
    return found


def test_checker_finds_an_undeclared_import():
    src = 'import numpy as np\nfrom sklearn.svm import SVC\nimport os, json\ndef f():\n    import lancedb\n'
    found = imports(src)
    assert found == {'numpy': True, 'sklearn': True, 'lancedb': False}
    assert undeclared(found, {'numpy'}, set()) == ['lancedb', 'sklearn']
    assert undeclared(found, {'numpy', 'scikit-learn'}, {'lancedb'}) == []
    assert undeclared({'lancedb': True}, {'numpy'}, {'lancedb'}) == ['lancedb']   # a module-level import is not optional


def test_every_import_is_in_requirements_txt():
    found = package_imports()
    assert {'numpy', 'sklearn', 'yaml', 'soundfile', 'tensorflow'} <= set(found)   # the scan sees the package
    pinned = declared((ROOT/'requirements.txt').read_text().splitlines())
    assert undeclared(found, pinned, set()) == []


def test_every_import_is_in_settings_ini():
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini')
    required = declared(shlex.split(cfg['DEFAULT']['requirements']))
    optional = declared(shlex.split(cfg['DEFAULT'].get('bench_requirements', '')))
    assert undeclared(package_imports(), required, optional) == []


# -- the package's import graph ---------------------------------------------------------------------------------------

def package_graph(sources:dict[str, str]) -> dict[str, set[str]]:
    """Module -> the package modules it imports, anywhere in it (module level or inside a function): `from .x import`,
    `from audio_latent.x import`, `from audio_latent import x`, `import audio_latent.x`."""
    graph = {}
    for mod, source in sources.items():
        deps = set()
        for n in ast.walk(ast.parse(source)):
            if isinstance(n, ast.ImportFrom) and n.level == 1: names = [n.module] if n.module else [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.module == 'audio_latent': names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and (n.module or '').startswith('audio_latent.'): names = [n.module.split('.')[1]]
            elif isinstance(n, ast.Import): names = [a.name.split('.')[1] for a in n.names if a.name.startswith('audio_latent.')]
            else: continue
            deps |= {x for x in names if x in sources and x != mod}
        graph[mod] = deps
    return graph


def import_cycles(graph:dict[str, set[str]]) -> list[list[str]]:
    "The strongly connected components of more than one module (Tarjan), each sorted: every import cycle lies in one."
    index, low, stack, on, out = {}, {}, [], set(), []
    def visit(v):
        index[v] = low[v] = len(index); stack.append(v); on.add(v)
        for w in sorted(graph[v]):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in sorted(graph):
        if v not in index: visit(v)
    return sorted(out)


def package_sources() -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted((ROOT/'audio_latent').glob('*.py')) if p.stem not in ('__init__', '_modidx')}


def test_cycle_finder_finds_a_made_up_cycle():
    made_up = {'a': 'from .b import x',
               'b': 'def f():\n    from audio_latent.c import y',  # an import inside a function counts
               'c': 'import audio_latent.a',
               'd': 'from audio_latent import a\nimport numpy'}
    test_graph = package_graph(made_up)
    assert test_graph == {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    assert import_cycles(test_graph) == [['a', 'b', 'c']]
    assert import_cycles(package_graph(dict(made_up, c='import numpy'))) == []  # the same modules, one way


def test_package_imports_have_no_cycle():
    assert import_cycles(package_graph(package_sources())) == []
