"""What the join bench does in the browsers: the in-page probe, one measured join, a diagnosis.

:data:`PROBE_JS` is installed in the joiner's page before the click: a capture-phase click
listener stamps ``performance.now()`` and a timer polls the subscribing connection's
``getStats()`` every :data:`POLL_MS` ms; :data:`RESULT_JS` reads the times back, relative to
the click. :func:`one_join` is one repetition (open the invitation, click, wait for the K
videos, leave); :func:`diagnose` logs what a councillor's page and the server say when the
councillor does not get in.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from .join_server import Server
from .orchestration import log

POLL_MS = 20
VIEWPORT = (640, 400)  # small windows: less compositing for K+1 browsers on a few CPUs

# Installed before the click: stamps the click, then polls getStats every POLL_MS.
PROBE_JS = """(pollMs) => {
  const b = {click: null, connected: null, packet: null, first: null, all: null, remotes: 0, expected: null,
             pli: 0, error: null};
  window.__joinBench = b;
  const button = document.querySelector('#join-button');
  button.addEventListener('click', () => { b.click = performance.now(); }, {capture: true, once: true});
  let busy = false;
  const timer = setInterval(async () => {
    if (busy || b.click === null) return;
    busy = true;
    try {
      const conn = window.hemicycle?.connection;
      const pc = conn?.subscribePc;
      if (!pc) return;
      const now = performance.now();
      if (b.connected === null && pc.connectionState === 'connected') b.connected = now;
      let decoded = 0, packets = 0, pli = 0;
      (await pc.getStats()).forEach(s => {
        if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
        if ((s.framesDecoded || 0) > 0) decoded += 1;
        packets += s.packetsReceived || 0;
        pli += s.pliCount || 0;
      });
      const t = performance.now();
      b.remotes = decoded;
      if (packets > 0 && b.packet === null) b.packet = t;
      if (decoded > 0 && b.first === null) { b.first = t; b.pli = pli; }
      if (b.expected !== null && decoded >= b.expected && b.all === null) b.all = t;
      if (b.all !== null) clearInterval(timer);
    } catch (e) {
      b.error = String(e);
    } finally {
      busy = false;
    }
  }, pollMs);
  b.stop = () => clearInterval(timer);
}"""

RESULT_JS = """() => { const b = window.__joinBench; if (!b) return null;
  const ms = (x) => (x === null || b.click === null) ? null : x - b.click;
  return {connected_ms: ms(b.connected), first_packet_ms: ms(b.packet), first_ms: ms(b.first),
          all_ms: ms(b.all), remotes: b.remotes, pli_before_first: b.pli, error: b.error}; }"""


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await predicate()
        except Exception as e:  # page still loading
            last = e
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


async def present_and_publishing(page) -> bool:
    return await page.evaluate(
        """() => { const c = window.hemicycle?.connection;
                   return !!(c && c.joined && c.publishPc?.connectionState === 'connected'); }"""
    )


async def one_join(joiner, url: str, k: int, timeout: float) -> dict[str, Any]:
    page = joiner.page
    await page.goto("about:blank")  # a new fragment alone would not reload /join
    await page.goto(url)
    await page.locator("#join-button:not([disabled])").wait_for(timeout=15_000)
    await page.evaluate(PROBE_JS, POLL_MS)
    await page.evaluate(f"() => {{ window.__joinBench.expected = {k}; }}")
    await page.locator("#join-button").click()
    try:
        await wait_for(
            lambda: page.evaluate("() => window.__joinBench.all !== null"), timeout, f"{k} remote videos decoding"
        )
    except RuntimeError:
        pass  # reported below as a missing "all"
    result = await page.evaluate(RESULT_JS)
    await page.evaluate("() => window.__joinBench.stop()")
    # a DOM click: with K tiles in a small window Playwright may find the button hard to "click"
    await page.evaluate("() => document.querySelector('#leave-button').click()")
    await wait_for(lambda: page.evaluate("() => document.body.dataset.view === 'ended'"), 10, "left")
    return result


async def diagnose(c, server: Server) -> None:
    """What a councillor's page and the server say when it does not get in."""
    try:
        info = await c.page.evaluate(
            """() => { const c = window.hemicycle?.connection;
                       return {view: document.body.dataset.view, state: window.hemicycle?.state(),
                               ws: c?.ws?.readyState, pub: c?.publishPc?.connectionState,
                               pubIce: c?.publishPc?.iceConnectionState, sub: c?.subscribePc?.connectionState,
                               status: document.querySelector('#status-line')?.textContent}; }"""
        )
    except Exception as e:  # page gone
        info = repr(e)
    log(f"{c.name}: page {json.dumps(info, default=str)[:2000]}")
    log(f"{c.name}: console (last 20):\n  " + "\n  ".join(c.console[-20:]))
    log("server stderr (tail):\n" + server.stderr_path.read_text(errors="replace")[-3000:])
