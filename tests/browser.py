"""Headless Chromium driven over the DevTools protocol (websocket-client), shared by the docs-site and listen-page tests.

Every `console.error`, uncaught exception and browser log entry of level error (a script, font or image that fails
to load) on a page is collected, so a test can require a page to render with none."""
import base64, json, shutil, subprocess, tempfile, time, urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason='needs Debian chromium (apt-get install chromium)')


class Browser:
    "One headless Chromium page: open a page and wait until it settles, collect its errors, evaluate, screenshot."
    def __init__(self, width:int=1280, height:int=900, # viewport in CSS pixels (also the screenshot's size)
                 start_timeout_s:float=30.0): # how long Chromium may take to open its DevTools port
        import websocket
        self.profile = Path(tempfile.mkdtemp(prefix='chromium-'))
        self.proc = subprocess.Popen([CHROMIUM, '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
                                      '--remote-debugging-port=0', f'--user-data-dir={self.profile}',
                                      f'--window-size={width},{height}', 'about:blank'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, t0 = self.profile/'DevToolsActivePort', time.time()
        while not port_file.exists() or not port_file.read_text().strip():
            if time.time() - t0 > start_timeout_s:
                self.close(); raise RuntimeError(f'chromium did not open its DevTools port in {start_timeout_s:.0f} s')
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = [t for t in json.load(urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list', timeout=10)) if t['type'] == 'page']
        # Chromium (150) refuses, with 403, a DevTools websocket whose handshake names an origin
        self.ws = websocket.create_connection(pages[0]['webSocketDebuggerUrl'], timeout=30, suppress_origin=True)
        self.next_id, self.events = 0, []
        for domain in ('Page', 'Runtime', 'Log'): self.call(f'{domain}.enable')
        self.call('Page.setLifecycleEventsEnabled', enabled=True)
        self.call('Emulation.setDeviceMetricsOverride', width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method:str, **params) -> dict:
        "Send one command, keep the events that arrive meanwhile, return its result."
        self.next_id += 1; my = self.next_id
        self.ws.send(json.dumps({'id': my, 'method': method, 'params': params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == my:
                if 'error' in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get('result', {})
            if 'method' in msg: self.events.append(msg)

    def _collect(self, done, timeout_s:float) -> bool:
        "Keep events until `done()` or `timeout_s`; whether `done()` came true."
        self.ws.settimeout(0.2); t0 = time.time()
        try:
            while not done():
                if time.time() - t0 > timeout_s: return False
                try: msg = json.loads(self.ws.recv())
                except Exception as e:
                    if type(e).__name__ != 'WebSocketTimeoutException': raise
                    continue
                if 'method' in msg: self.events.append(msg)
            return True
        finally: self.ws.settimeout(30)

    def open(self, url:str|Path, # an http(s) URL, or a local file
             timeout:float=30.0, # seconds for the load event, and again for the network to go idle
             settle_s:float=0.3, # then this long for scripts that run after the network went quiet (MathJax)
            ) -> 'Browser':
        "Load a page: its load event (required), the network going idle, then `settle_s`; errors from here on."
        self.events = []
        self.call('Page.navigate', url=Path(url).resolve().as_uri() if isinstance(url, Path) else url)
        seen = lambda name: any(e['method'] == 'Page.lifecycleEvent' and e['params']['name'] == name for e in self.events)
        loaded = lambda: any(e['method'] == 'Page.loadEventFired' for e in self.events)
        assert self._collect(loaded, timeout), f'{url}: no load event within {timeout} s'
        self._collect(lambda: seen('networkIdle'), timeout)
        self._collect(lambda: False, settle_s)
        return self

    def errors(self) -> list[str]:
        "Console errors, uncaught exceptions and failed loads (the browser's own log) since the page was opened."
        out = []
        for e in self.events:
            m, p = e['method'], e.get('params', {})
            if m == 'Runtime.consoleAPICalled' and p['type'] in ('error', 'assert'):
                out.append('console.error: ' + ' '.join(str(a.get('value', a.get('description', ''))) for a in p['args']))
            elif m == 'Runtime.exceptionThrown':
                d = p['exceptionDetails']; out.append('exception: ' + d.get('exception', {}).get('description', d['text']))
            elif m == 'Log.entryAdded' and p['entry']['level'] == 'error':
                out.append(f"log ({p['entry']['source']}): {p['entry']['text']} {p['entry'].get('url', '')}")
        return out

    def evaluate(self, expression:str):
        "The value of a JavaScript expression in the page (a promise is awaited); an exception fails the test."
        r = self.call('Runtime.evaluate', expression=expression, awaitPromise=True, returnByValue=True)
        assert 'exceptionDetails' not in r, r['exceptionDetails']
        return r['result'].get('value')

    def screenshot(self, dest:str|Path) -> Path:
        "A PNG of the viewport."
        Path(dest).write_bytes(base64.b64decode(self.call('Page.captureScreenshot', format='png')['data']))
        return Path(dest)

    def close(self):
        try:
            if hasattr(self, 'ws'): self.ws.close()
        finally:
            self.proc.terminate()
            try: self.proc.wait(10)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
