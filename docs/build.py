"""Build the documentation site from the notebooks: `python docs/build.py [--site _site]` (what `make docs` runs).

nbdev publishes a project's notebooks with Quarto (`nbdev_docs`), which cannot be installed on these machines. This
script builds the same kind of site with MkDocs (Material theme, mkdocs-jupyter), offline:

* a page for `nbs/index.ipynb` (the home page) and for every notebook, in the order of the notebook table in
  `nbs/index.ipynb` (the order the data flows); a notebook that the table does not list is an error. Notebooks are
  shown as committed (no outputs: `nbdev_clean` strips them), processed as nbdev's site processes them: `#| hide` and
  `#| default_exp` cells are left out and `#|` directive lines are removed;
* an API page per module: every name in the module's `__all__` (what nbdev exported) with its signature, docstring
  and the docments (argument comments) as a table, like nbdev's `show_doc`;
* the report, `reports/report.md`, with its figures.
"""
from __future__ import annotations
import argparse, importlib, inspect, os, re, shutil, subprocess, sys
from pathlib import Path
import nbformat, yaml
from fastcore.docments import docments

ROOT = Path(__file__).resolve().parents[1]
TABLE_ROW = re.compile(r'^\|\s*`(?P<nb>[0-9][0-9a-z_]*)`\s*\|\s*`(?P<module>audio_latent\.\w+)`\s*\|(?P<what>.*)\|\s*$')
MATHJAX_LOCAL = """// The site's MathJax settings: fonts from this copy only (jupyter-server-mathjax ships the STIX-Web web fonts)
// MathJax_Blank (MathJax's font-loading probe) points at about:blank, which Chromium reports as a failed load: a
// local() font that no system has fails the same way without a request.
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
                                 styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank_None')"}}},
                    SVG: {font: "STIX-Web"}, messageStyle: "none"});
MathJax.Ajax.loadComplete("[MathJax]/config/local/offline.js");
"""
# The hidden MathML copy that MathJax adds for screen readers is styled with TeX web fonts this MathJax lacks
# (fonts/HTML-CSS/TeX/otf): a system font instead, so that no page asks for a file the site does not have.
SITE_CSS = """.MJX_Assistive_MathML, .MJX_Assistive_MathML * { font-family: serif !important; }
"""


def notebook_table(nbs:Path) -> list[dict]:
    "The rows (`nb`, `module`, `what`) of the notebook table in `nbs/index.ipynb`, checked against the notebooks on disk."
    text = '\n'.join(''.join(c.source) for c in nbformat.read(nbs/'index.ipynb', as_version=4).cells if c.cell_type == 'markdown')
    rows = [m.groupdict() for m in map(TABLE_ROW.match, text.splitlines()) if m]
    listed, on_disk = [r['nb'] for r in rows], sorted(p.stem for p in nbs.glob('*.ipynb') if p.stem != 'index')
    missing, stale = sorted(set(on_disk) - set(listed)), sorted(set(listed) - set(on_disk))
    if missing or stale:
        raise SystemExit(f"nbs/index.ipynb: the notebook table must list every notebook of nbs/ "
                         f"(not listed: {missing}; listed but missing: {stale}); edit the table, then `make readme`.")
    return [dict(r, what=r['what'].strip()) for r in rows]


def notebook_title(path:Path) -> str:
    "The notebook's title, its first line `# Title` (nbdev's convention), as plain text for the navigation."
    first = nbformat.read(path, as_version=4).cells[0]
    line = first.source.splitlines()[0] if first.cell_type == 'markdown' and first.source.startswith('# ') else ''
    if not line: raise SystemExit(f"{path}: the first cell must be Markdown starting with '# Title' (nbdev's convention).")
    return line[2:].replace('`', '').strip()


def site_notebook(src:Path, dst:Path):
    "Write `src` as nbdev's site shows it: no `#| hide`/`#| default_exp` cells, no `#|` directive lines."
    nb = nbformat.read(src, as_version=4)
    keep = []
    for c in nb.cells:
        if c.cell_type == 'code':
            lines = c.source.splitlines()
            directives = [l[3:].split() for l in lines if l.startswith('#|')]
            if any(d and d[0] in ('hide', 'default_exp') for d in directives): continue
            c.source = '\n'.join(l for l in lines if not l.startswith('#|')).strip('\n')
            if not c.source: continue
        keep.append(c)
    nb.cells = keep
    nbformat.write(nb, dst)


def index_page(nbs:Path, table:list[dict]) -> str:
    "The home page: `nbs/index.ipynb`'s Markdown, its notebook table linked to the notebook and API pages."
    text = '\n\n'.join(''.join(c.source) for c in nbformat.read(nbs/'index.ipynb', as_version=4).cells if c.cell_type == 'markdown')
    out = []
    for line in text.splitlines():
        m = TABLE_ROW.match(line)
        if m:
            nb, mod = m['nb'], m['module']
            line = f"| [`{nb}`]({nb}.ipynb) | [`{mod}`](api/{mod.split('.')[1]}.md) |{m['what']}|"
        out.append(line)
    return '\n'.join(out) + '\n\n**On this site**: every notebook as a page (as committed, without outputs), ' \
        'an API page per module, and [the report](report.md) with its figures.\n'


def _cell(s) -> str:
    "Text for a Markdown table cell."
    return str(s).replace('|', '\\|').replace('\n', ' ')


def _value(v, width:int=70) -> str:
    r = repr(v)
    return r if len(r) <= width else r[:width - 3] + '...'


def _anno(a) -> str:
    if a is inspect.Parameter.empty or a is None: return ''
    return a if isinstance(a, str) else getattr(a, '__name__', str(a))


def _signature(f) -> str:
    "`(a:int, b:str='x') -> float`, annotations written as in the source (no quotes from `from __future__ import annotations`)."
    try: sig = inspect.signature(f)
    except (TypeError, ValueError): return '(...)'
    parts, star = [], False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star: parts.append('*'); star = True
        prefix = {p.VAR_POSITIONAL: '*', p.VAR_KEYWORD: '**'}.get(p.kind, '')
        star = star or p.kind is p.VAR_POSITIONAL
        a = _anno(p.annotation)
        parts.append(prefix + p.name + (f':{a}' if a else '') + ('' if p.default is p.empty else f'={p.default!r}'))
    ret = _anno(sig.return_annotation)
    return f"({', '.join(parts)})" + (f' -> {ret}' if ret else '')


def doc_function(f, name:str, level:int=3) -> str:
    "Markdown for one function or class: signature, docstring, and a table of its arguments with their docments."
    sig = _signature(f)
    kind = 'class ' if inspect.isclass(f) else ''
    md = [f"{'#'*level} `{name}` {{#{name}}}", '', f"```python\n{kind}{name}{sig}\n```", '']
    doc = inspect.getdoc(f) if not inspect.isclass(f) or f.__doc__ else None
    if doc: md += [doc, '']
    try: params = docments(f, full=True, returns=True)
    except (TypeError, OSError): params = {}
    rows = [(k, v) for k, v in params.items() if k not in ('self', 'cls')]
    if all(k in ('args', 'kwargs', 'return') and not v['docment'] for k, v in rows): rows = []  # nothing to say
    if rows:
        md += ['| | type | default | details |', '|---|---|---|---|']
        for k, v in rows:
            default = '' if k == 'return' or v['default'] is inspect.Parameter.empty else f"`{_cell(_value(v['default']))}`"
            anno = _anno(v['anno'])
            label = '**returns**' if k == 'return' else f'`{k}`'
            if k == 'return' and not (anno or v['docment']): continue
            md.append(f"| {label} | {f'`{_cell(anno)}`' if anno else ''} | {default} | {_cell(v['docment'] or '')} |")
        md.append('')
    return '\n'.join(md)


def api_page(row:dict) -> str:
    "The API page of one module: every name nbdev exported (`__all__`), functions and classes with their docments."
    mod = importlib.import_module(row['module'])
    names = list(getattr(mod, '__all__', []))
    if not names: raise SystemExit(f"{row['module']}: no `__all__`; export the module with `nbdev_export` first.")
    md = [f"# `{row['module']}`", '', f"{row['what']}", '',
          f"Exported from the notebook [`{row['nb']}`](../{row['nb']}.ipynb), where each function comes with its "
          f"derivation and tests.", '']
    consts = [n for n in names if not callable(getattr(mod, n))]
    for n in names:
        obj = getattr(mod, n)
        if not callable(obj): continue
        md.append(doc_function(obj, n))
        if inspect.isclass(obj):
            for m, meth in vars(obj).items():
                if m.startswith('_') or not callable(getattr(obj, m, None)): continue
                if isinstance(meth, (staticmethod, classmethod)): meth = meth.__func__
                if isinstance(meth, property) or not inspect.isfunction(meth): continue
                md.append(doc_function(meth, f'{n}.{m}', level=4))
    if consts:
        md += ['## Constants', '', '| name | value |', '|---|---|']
        md += [f"| `{n}` | `{_cell(_value(getattr(mod, n)))}` |" for n in consts]
    return '\n'.join(md) + '\n'


def mathjax(dst:Path):
    "Copy the MathJax 2.7 that jupyter-server-mathjax ships, with the site's font settings."
    import jupyter_server_mathjax
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent/'static', dst)
    (dst/'config'/'local').mkdir(parents=True, exist_ok=True)
    (dst/'config'/'local'/'offline.js').write_text(MATHJAX_LOCAL)


def build(site:Path, work:Path, root:Path=ROOT, strict:bool=True) -> Path:
    "Write the pages into `work/docs`, the MkDocs settings into `work/mkdocs.yml`, and build the site into `site`."
    nbs, docs = root/'nbs', work/'docs'
    shutil.rmtree(docs, ignore_errors=True); (docs/'api').mkdir(parents=True)
    table = notebook_table(nbs)
    (docs/'index.md').write_text(index_page(nbs, table))
    for r in table:
        site_notebook(nbs/f"{r['nb']}.ipynb", docs/f"{r['nb']}.ipynb")
        (docs/'api'/f"{r['module'].split('.')[1]}.md").write_text(api_page(r))
    shutil.copy(root/'reports'/'report.md', docs/'report.md')
    shutil.copytree(root/'reports'/'figures', docs/'figures')
    mathjax(docs/'assets'/'mathjax')
    (docs/'assets'/'site.css').write_text(SITE_CSS)
    cfg = yaml.safe_load((root/'docs'/'mkdocs.yml').read_text())
    cfg.update(docs_dir=str(docs), site_dir=str(site.resolve()), extra_css=['assets/site.css'], nav=[
        {'Home': 'index.md'},
        {'Notebooks': [{notebook_title(nbs/f"{r['nb']}.ipynb"): f"{r['nb']}.ipynb"} for r in table]},
        {'API': [{r['module']: f"api/{r['module'].split('.')[1]}.md"} for r in table]},
        {'Report': 'report.md'}])
    (work/'mkdocs.yml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, '-m', 'mkdocs', 'build', '--clean', '-q', '-f', str(work/'mkdocs.yml')] + (['--strict'] if strict else [])
    subprocess.run(cmd, check=True, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})  # no end-of-life banner
    return site


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--site', type=Path, default=ROOT/'_site', help='where the site is written (default _site)')
    ap.add_argument('--work', type=Path, default=ROOT/'_build'/'docs_src', help='where the generated pages go')
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    print(f"site: {build(a.site, a.work)/'index.html'}")
