"""The documentation site (`make docs`, docs/build.py) renders in headless Chromium with no console errors.

Chromium is driven through the DevTools protocol (websocket-client): every `console.error`, uncaught exception and
browser log entry of level error (a script or font that fails to load, e.g. from a CDN on a machine without
internet) is collected. `test_detector_reports_errors` shows that the detector sees each kind of error on
deliberately broken pages, so a clean result on the site means something.
"""
import functools, http.server, re, subprocess, sys, threading
from pathlib import Path
import nbformat, pytest
from browser import Browser, needs_chromium

ROOT = Path(__file__).resolve().parents[1]
pytestmark = needs_chromium


def serve(folder:Path):
    "Serve `folder` over HTTP on a free local port in a thread; return (base url, server)."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    handler = functools.partial(Quiet, directory=str(folder))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f'http://127.0.0.1:{srv.server_address[1]}', srv


@pytest.fixture(scope='module')
def browser():
    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The site built once by docs/build.py (what `make docs` runs) into a temporary folder, served over HTTP."
    tmp = tmp_path_factory.mktemp('docs')
    subprocess.run([sys.executable, str(ROOT/'docs'/'build.py'), '--site', str(tmp/'site'), '--work', str(tmp/'work')],
                   check=True, cwd=ROOT)
    url, srv = serve(tmp/'site')
    yield url, tmp
    srv.shutdown()


def test_detector_reports_errors(browser, tmp_path):
    "Each kind of error the site test looks for is reported on a page that has it, and a clean page reports none."
    pages = {'clean.html': '<p>fine</p>',
             'console.html': "<script>console.error('deliberate console error')</script>",
             'throw.html': "<script>throw new Error('deliberate exception')</script>",
             'cdn.html': '<script src="https://cdn.invalid/require.min.js"></script>',   # no internet: fails to load
             'missing.html': '<script src="assets/missing.js"></script>'}
    for name, body in pages.items(): (tmp_path/name).write_text(f'<!doctype html><html><head><link rel="icon" href="data:,"></head><body>{body}</body></html>')
    url, srv = serve(tmp_path)
    try: found = {name: browser.open(f'{url}/{name}').errors() for name in pages}
    finally: srv.shutdown()
    assert found['clean.html'] == []
    assert any('deliberate console error' in e for e in found['console.html']), found
    assert any('deliberate exception' in e for e in found['throw.html']), found
    assert any('cdn.invalid' in e or 'ERR_NAME_NOT_RESOLVED' in e for e in found['cdn.html']), found
    assert any('404' in e or 'missing.js' in e for e in found['missing.html']), found


def test_index_page(site, browser):
    "The home page renders without console errors and lists every notebook, API page and the report in its nav."
    url, tmp = site
    assert browser.open(f'{url}/index.html', settle_s=1.0).errors() == []
    browser.screenshot(tmp/'index.png')
    nav = browser.evaluate("Array.from(document.querySelectorAll('nav.md-nav--primary a')).map(a => a.textContent.trim())")
    sys.path.insert(0, str(ROOT/'docs')); from build import notebook_table
    order = [r['nb'] for r in notebook_table(ROOT/'nbs')]   # the notebook table of nbs/index.ipynb, checked against nbs/
    titles = [nbformat.read(ROOT/'nbs'/f'{nb}.ipynb', as_version=4).cells[0].source.splitlines()[0][2:].replace('`', '') for nb in order]
    assert [t for t in nav if t in titles] == titles, nav   # every notebook, in the table's (data-flow) order
    assert [m for m in nav if m.startswith('audio_latent.')] == [r['module'] for r in notebook_table(ROOT/'nbs')]
    assert 'Report' in nav
    text = browser.evaluate('document.body.innerText')
    assert 'Search an archive by example' in text   # the home page is nbs/index.ipynb


def test_api_page(site, browser):
    "An API page renders without console errors and shows an exported function with its argument comments (docments)."
    url, tmp = site
    assert browser.open(f'{url}/api/search.html', settle_s=1.0).errors() == []
    browser.screenshot(tmp/'api_search.png')
    row = browser.evaluate("""Array.from(document.querySelectorAll('h3')).some(h => h.id === 'make_ann_index')
        && Array.from(document.querySelectorAll('tr')).map(r => r.innerText).filter(t => t.includes('n_train'))""")
    assert row and any('how many vectors the index will hold' in r for r in row), row


def test_notebook_page_math(site, browser):
    "A notebook page renders its prose, code and maths (MathJax from the site itself) without console errors."
    url, tmp = site
    assert browser.open(f'{url}/04_vae.html', timeout=40, settle_s=2.0).errors() == []
    browser.screenshot(tmp/'04_vae.png')
    assert browser.evaluate("document.querySelectorAll('.MathJax, .MathJax_SVG, .MathJax_Display').length") > 10
    assert browser.evaluate("document.querySelectorAll('.jp-CodeCell').length") > 10
    assert '#| export' not in browser.evaluate('document.body.innerText')


# a reference that makes the browser fetch from the internet: a script, image or frame source, a stylesheet, preload
# or icon link, or a CSS url() (an <a href> is a link the reader may follow, not a load)
EXTERNAL = re.compile(r'<(?:script|img|iframe)[^>]*\ssrc="https?://'
                      r'|<link[^>]*\shref="https?://[^"]*"[^>]*rel="(?:stylesheet|preload|icon)"'
                      r'|<link[^>]*rel="(?:stylesheet|preload|icon)"[^>]*\shref="https?://|url\(["\']?https?://')


def test_no_page_loads_from_the_internet(site):
    "No page of the site names an external script, stylesheet, font or image (the browser tests open only three pages)."
    for bad in ('<script src="https://cdn.example/require.js">', '<link rel="stylesheet" href="https://fonts.googleapis.com/css">',
                "@font-face{src:url('https://x.example/f.woff')}"): assert EXTERNAL.search(bad), bad
    assert not EXTERNAL.search('<a href="https://github.com/">a link</a>')
    url, tmp = site
    pages = sorted((tmp/'site').rglob('*.html'))
    assert len(pages) >= 2*len(list((ROOT/'nbs').glob('*.ipynb')))   # notebook pages and API pages
    found = {p.relative_to(tmp/'site').as_posix(): m.group(0) for p in pages for m in [EXTERNAL.search(p.read_text())] if m}
    assert found == {}
