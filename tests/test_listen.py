"""The results page in a real browser: headless Chromium opens it, the DevTools protocol reports console errors and
failed loads, the DOM is checked (players, decodable audio, decoded images) and a screenshot is taken."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from browser import Browser, needs_chromium

pytestmark = needs_chromium


@pytest.fixture(scope='module')
def browser():
    b = Browser(1200, 2000)
    yield b
    b.close()


# In the page: audio elements whose data: URI the browser decodes (metadata loaded, a duration > 0), and images decoded
_DOM_CHECK = """(async () => {
  const audio = [...document.querySelectorAll('audio')];
  const durations = await Promise.all(audio.map(a => new Promise(res => {
    const probe = new Audio(); probe.preload = 'metadata';
    probe.onloadedmetadata = () => res(probe.duration); probe.onerror = () => res(-1); probe.src = a.src;
    setTimeout(() => res(-2), 10000); })));
  const imgs = [...document.querySelectorAll('img')];
  return {audio: audio.length, audio_data: audio.filter(a => a.getAttribute('src').startsWith('data:audio/wav;base64,')).length,
          durations, imgs: imgs.length, imgs_decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          external: [...document.querySelectorAll('[src],[href]')].map(e => e.getAttribute('src') || e.getAttribute('href'))
                    .filter(u => !u.startsWith('data:')).length};
})()"""


def _pixel_sd(png:Path) -> float:
    from PIL import Image
    return float(np.asarray(Image.open(png).convert('L'), np.float32).std())


def test_results_page_in_chromium(browser, catalogue, tmp_path):
    from audio_latent.search import search_index
    from audio_latent.update import index_folder
    from audio_latent.listen import results_html, whole_file_hits
    pick = pd.concat([catalogue[catalogue.category == c].head(4) for c in ('dog', 'rain', 'church_bells')])
    (tmp_path/'arch').mkdir()
    for p in pick.path: (tmp_path/'arch'/Path(p).name).symlink_to(p)
    index = index_folder(tmp_path/'arch', tmp_path/'idx', model='logmel', labels='esc50', progress=False)
    queries = [pick.path.iloc[0], pick.path.iloc[8]]
    hits = pd.concat([whole_file_hits(index, q, search_index(index, q, k=4)) for q in queries], ignore_index=True)
    page = results_html(hits, index.resolve, tmp_path/'results.html')

    browser.open(page)
    assert browser.errors() == []
    dom = browser.evaluate(_DOM_CHECK)
    n = len(queries) + len(hits)
    assert dom['audio'] == dom['audio_data'] == n, dom
    assert all(4.9 < d < 6.0 for d in dom['durations']), dom['durations']  # 5 s clips + 0.25 s padding, decoded
    assert dom['imgs'] == dom['imgs_decoded'] == n, dom
    assert dom['external'] == 0
    shot = browser.screenshot(os.environ.get('LISTEN_SCREENSHOT') or tmp_path/'shot.png')  # set it to look at the page
    assert shot.stat().st_size > 10_000 and _pixel_sd(shot) > 5, (shot, _pixel_sd(shot))
    # still clean after the players are used
    browser.evaluate("Promise.all([...document.querySelectorAll('audio')].slice(0, 2).map(a => { a.muted = true; "
                     "return a.play().then(() => a.pause(), () => null); }))")
    assert browser.errors() == []


def test_error_detector_catches_errors(browser, tmp_path):
    "The detector is not blind: a deliberate console.error, an uncaught exception and a missing image are all reported."
    page = tmp_path/'broken.html'
    page.write_text('<!DOCTYPE html><html><body><p>broken</p><img src="missing.png">'
                    '<script>console.error("deliberate error"); throw new Error("deliberate exception");</script></body></html>')
    errors = browser.open(page).errors()
    assert any('deliberate error' in e for e in errors), errors
    assert any('deliberate exception' in e for e in errors), errors
    assert any('missing.png' in e for e in errors), errors
    dom = browser.evaluate(_DOM_CHECK)
    assert dom['imgs'] == 1 and dom['imgs_decoded'] == 0  # the image check fails on an image that does not load


def test_blank_screenshot_is_caught(browser, tmp_path):
    "The screenshot check can fail: an empty page photographs as one colour."
    page = tmp_path/'blank.html'; page.write_text('<!DOCTYPE html><html><body></body></html>')
    assert _pixel_sd(browser.open(page).screenshot(tmp_path/'blank.png')) == 0


def test_cli_search_html_page_of_spans(browser, catalogue, tmp_path):
    "`audio-latent search ... --spans 1 --html`: one page with a player per query and per hit, each hit cut to its span."
    import subprocess, sys
    pick = pd.concat([catalogue[catalogue.category == c].head(3) for c in ('dog', 'rain')])
    (tmp_path/'arch').mkdir()
    for p in pick.path: (tmp_path/'arch'/Path(p).name).symlink_to(p)
    cli = lambda *a: subprocess.run([sys.executable, '-m', 'audio_latent.cli', *map(str, a)], capture_output=True, text=True,
                                    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    r = cli('index', tmp_path/'arch', '--index', tmp_path/'idx', '--model', 'logmel', '--labels', 'esc50', '--quiet')
    assert r.returncode == 0, r.stderr
    r = cli('search', pick.path.iloc[0], pick.path.iloc[3], '--index', tmp_path/'idx', '-k', '2', '--spans', '1',
            '--format', 'csv', '--out', tmp_path/'hits.csv', '--html', tmp_path/'page.html')
    assert r.returncode == 0 and f"listen to them: {tmp_path/'page.html'}" in r.stderr, r.stderr
    hits = pd.read_csv(tmp_path/'hits.csv')
    assert len(hits) == 4 and ((hits.end_s - hits.start_s) < 5).all()  # spans, not whole files
    browser.open(tmp_path/'page.html')
    assert browser.errors() == []
    dom = browser.evaluate(_DOM_CHECK)
    assert dom['audio'] == dom['audio_data'] == 2 + len(hits) and dom['imgs_decoded'] == 2 + len(hits), dom
    spans = sorted(dom['durations'])[:len(hits)]  # the hits' players: span plus padding, shorter than the 5 s queries
    want = sorted((hits.end_s - hits.start_s + 0.5).clip(upper=5.5))
    np.testing.assert_allclose(spans, want, atol=0.3)
