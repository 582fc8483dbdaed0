"""Headless Chromium councillors driven by Playwright, and in-page probes.

One Chromium *process* per councillor (its own user-data-dir, its own fake camera and
microphone files), so that nothing is shared between them but the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, Playwright

from .media import COLOURS, nearest_colour

CHROMIUM = "/usr/bin/chromium"
AXE_JS = Path(__file__).resolve().parents[2] / "web_client" / "vendor" / "axe" / "axe.min.js"

BASE_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_args(y4m: Path | None = None, wav: Path | None = None) -> list[str]:
    args = list(BASE_ARGS)
    if y4m is not None:
        args.append(f"--use-file-for-fake-video-capture={y4m}")
    if wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={wav}")
    return args


@dataclass
class Councillor:
    """One browser process with one page. ``console`` collects the page's console and errors."""

    name: str
    context: BrowserContext
    page: Page
    user_data_dir: Path
    console: list[str] = field(default_factory=list)

    def pids(self) -> list[int]:
        """The processes of this browser: those started with our own, unique user-data-dir."""
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    cmdline = (d / "cmdline").read_bytes()
                except OSError:
                    continue
                if str(self.user_data_dir).encode() in cmdline:
                    out.append(int(d.name))
        return out

    def kill(self) -> None:
        """Crash the browser (SIGKILL): the server sees the connections drop, no clean leave."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def close(self) -> None:
        try:
            await self.context.close()
        except Exception:  # already gone (crashed or killed)
            pass
        shutil.rmtree(self.user_data_dir, ignore_errors=True)


async def launch_chromium(
    pw: Playwright,
    name: str,
    y4m: Path | None = None,
    wav: Path | None = None,
    viewport: tuple[int, int] = (1280, 800),
) -> Councillor:
    user_data_dir = Path(tempfile.mkdtemp(prefix=f"hemicycle-chromium-{name}-"))
    context = await pw.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=CHROMIUM,
        headless=True,
        args=chromium_args(y4m, wav),
        # Playwright mutes audio by default; the analyser does not need the speakers, but a
        # muted element must not be the reason a remote track is silent.
        ignore_default_args=["--mute-audio"],
        viewport={"width": viewport[0], "height": viewport[1]},
    )
    page = context.pages[0] if context.pages else await context.new_page()
    c = Councillor(name, context, page, user_data_dir)
    page.on("console", lambda m: c.console.append(f"[{m.type}] {m.text}"))
    page.on("pageerror", lambda e: c.console.append(f"[pageerror] {e}"))
    return c


# ------------------------------------------------------------------ in-page probes

REMOTE_TILES_JS = """() => [...document.querySelectorAll('figure.tile[data-source="camera"]')]
  .filter(f => f.dataset.self !== 'true')
  .map(f => ({participant_id: f.dataset.participantId,
              name: (f.querySelector('figcaption .tile-name') || f.querySelector('figcaption'))
                      ?.textContent.trim() || ''}))"""

TILE_COLOUR_JS = """(id) => {
  const v = document.querySelector(
    `figure.tile[data-participant-id="${CSS.escape(id)}"][data-source="camera"] video`);
  if (!v || v.videoWidth === 0 || v.readyState < 2) return null;
  const c = document.createElement('canvas');
  c.width = 64; c.height = 48;
  const g = c.getContext('2d', {willReadFrequently: true});
  g.drawImage(v, 0, 0, c.width, c.height);
  const d = g.getImageData(8, 8, 48, 32).data;  // the centre, away from any border
  let r = 0, gr = 0, b = 0;
  for (let i = 0; i < d.length; i += 4) { r += d[i]; gr += d[i + 1]; b += d[i + 2]; }
  const n = d.length / 4;
  return [r / n, gr / n, b / n];
}"""

AUDIO_FREQ_JS = """async ([id, reads]) => {
  const sel = `audio[data-participant-id="${CSS.escape(id)}"]`;
  const el = document.querySelector(`${sel}[data-source="mic"]`) || document.querySelector(sel);
  const stream = el && el.srcObject;
  if (!stream || stream.getAudioTracks().length === 0) return null;
  const ctx = new AudioContext();
  await Promise.race([ctx.resume(), new Promise(r => setTimeout(r, 2000))]);
  if (ctx.state !== 'running') { await ctx.close(); return null; }
  const src = ctx.createMediaStreamSource(stream);
  const an = ctx.createAnalyser();
  an.fftSize = 8192; an.smoothingTimeConstant = 0;
  src.connect(an);
  const buf = new Float32Array(an.frequencyBinCount);
  const binHz = ctx.sampleRate / an.fftSize;
  const peaks = [];
  await new Promise(r => setTimeout(r, 300));
  for (let k = 0; k < reads; k++) {
    an.getFloatFrequencyData(buf);
    let best = 1, bestDb = -Infinity;
    for (let i = 1; i < buf.length; i++) if (buf[i] > bestDb) { bestDb = buf[i]; best = i; }
    if (bestDb > -90) peaks.push(best * binHz);  // below that: silence
    await new Promise(r => setTimeout(r, 200));
  }
  src.disconnect(); await ctx.close();
  if (peaks.length === 0) return null;
  peaks.sort((a, b) => a - b);
  return peaks[Math.floor(peaks.length / 2)];  // the median of the reads
}"""

# framesDecoded of each inbound video, keyed by the participant whose tile shows that track
# (by track id), else by the stats' own track identifier.
FRAMES_DECODED_JS = """async () => {
  const pc = window.hemicycle?.connection?.subscribePc;
  if (!pc) return null;
  const owner = {};
  document.querySelectorAll('figure.tile[data-source="camera"] video').forEach(v => {
    const id = v.closest('figure').dataset.participantId;
    (v.srcObject?.getVideoTracks?.() || []).forEach(t => { owner[t.id] = id; });
  });
  const out = {};
  (await pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      const key = owner[s.trackIdentifier] || s.trackIdentifier || s.mid || s.id;
      out[key] = Math.max(out[key] || 0, s.framesDecoded || 0);
    }
  });
  return out;
}"""

DTLS_JS = """async () => {
  const conn = window.hemicycle?.connection;
  const out = {};
  for (const name of ['publishPc', 'subscribePc']) {
    const pc = conn && conn[name];
    if (!pc) { out[name] = null; continue; }
    const t = [];
    (await pc.getStats()).forEach(s => {
      if (s.type === 'transport')
        t.push({dtlsState: s.dtlsState || pc.connectionState, srtpCipher: s.srtpCipher || null,
                dtlsCipher: s.dtlsCipher || null});
    });
    out[name] = t[0] || {dtlsState: pc.connectionState, srtpCipher: null, dtlsCipher: null};
  }
  return out;
}"""


async def remote_tiles(page: Page) -> list[dict[str, str]]:
    return await page.evaluate(REMOTE_TILES_JS)


async def tile_rgb(page: Page, participant_id: str) -> tuple[float, float, float] | None:
    rgb = await page.evaluate(TILE_COLOUR_JS, participant_id)
    return tuple(rgb) if rgb else None  # type: ignore[return-value]


async def tile_colour(
    page: Page, participant_id: str, known: dict[str, tuple[int, int, int]] | None = None
) -> str | None:
    rgb = await tile_rgb(page, participant_id)
    if rgb is None or max(rgb) < 10:  # not playing yet, or black
        return None
    return nearest_colour(rgb, known or COLOURS)


async def audio_frequency(page: Page, participant_id: str, reads: int = 5) -> float | None:
    return await page.evaluate(AUDIO_FREQ_JS, [participant_id, reads])


async def frames_decoded(page: Page) -> dict[str, int] | None:
    return await page.evaluate(FRAMES_DECODED_JS)


async def dtls_info(page: Page) -> dict[str, Any]:
    return await page.evaluate(DTLS_JS)


async def hemicycle_state(page: Page) -> dict[str, Any] | None:
    return await page.evaluate("() => window.hemicycle?.state ? window.hemicycle.state() : null")


async def run_axe(page: Page, axe_js: Path = AXE_JS) -> list[dict[str, Any]]:
    """axe-core on the current page: the serious and critical violations, summarised."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Not add_script_tag: the page's CSP (script-src 'self') rightly blocks inline scripts.
        # An evaluation from the driver is not subject to it.
        await page.evaluate(axe_js.read_text(encoding="utf-8") + "\n;typeof window.axe")
    result = await page.evaluate("async () => JSON.stringify((await axe.run()).violations)")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n.get("target") for n in v.get("nodes", [])][:5],
        }
        for v in json.loads(result)
        if v.get("impact") in ("serious", "critical")
    ]


async def wait_until(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll an async ``predicate`` until it returns a truthy value; return it or raise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        try:
            last = await predicate()
        except Exception as e:  # page navigating, element missing...
            last = e
        if last and not isinstance(last, Exception):
            return last
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------ per-slot probes (member controls)

# inbound-rtp counters of the subscribing connection, keyed "participant|source|kind" through
# the client's own slot table (mid -> participant/source), so screen shares and audio count too.
INBOUND_STATS_JS = """async () => {
  const conn = window.hemicycle?.connection;
  const pc = conn?.subscribePc;
  if (!pc) return null;
  const byMid = {};
  for (const t of conn.remoteTracks()) byMid[String(t.mid)] = `${t.participantId}|${t.source}|${t.kind}`;
  const out = {};
  (await pc.getStats()).forEach(s => {
    if (s.type !== 'inbound-rtp') return;
    const key = byMid[String(s.mid)];
    if (!key) return;
    out[key] = {mid: String(s.mid), packets: s.packetsReceived || 0, bytes: s.bytesReceived || 0,
                frames: s.framesDecoded || 0, energy: s.totalAudioEnergy ?? null};
  });
  return out;
}"""

# Loudest spectral bin (dB) and its frequency over a few reads of a remote <audio>'s stream.
AUDIO_PEAK_JS = """async ([id, reads]) => {
  const el = document.querySelector(
    `audio[data-participant-id="${CSS.escape(id)}"][data-source="mic"]`);
  const stream = el && el.srcObject;
  if (!stream || stream.getAudioTracks().length === 0) return null;
  const ctx = new AudioContext();
  await Promise.race([ctx.resume(), new Promise(r => setTimeout(r, 2000))]);
  if (ctx.state !== 'running') { await ctx.close(); return null; }
  const src = ctx.createMediaStreamSource(stream);
  const an = ctx.createAnalyser();
  an.fftSize = 8192; an.smoothingTimeConstant = 0;
  src.connect(an);
  const buf = new Float32Array(an.frequencyBinCount);
  const binHz = ctx.sampleRate / an.fftSize;
  let peakDb = -200, peakHz = null;
  await new Promise(r => setTimeout(r, 300));
  for (let k = 0; k < reads; k++) {
    an.getFloatFrequencyData(buf);
    for (let i = 1; i < buf.length; i++)
      if (buf[i] > peakDb) { peakDb = buf[i]; peakHz = i * binHz; }
    await new Promise(r => setTimeout(r, 150));
  }
  src.disconnect(); await ctx.close();
  return {peak_db: Math.max(peakDb, -200), peak_hz: peakHz};
}"""

# The remote tiles of every source, with what the member sees on them.
TILES_JS = """() => [...document.querySelectorAll('figure.tile:not([data-self])')].map(f => {
  const v = f.querySelector('video');
  const badge = f.querySelector('.badge-muted');
  const avatar = f.querySelector('.tile-avatar');
  return {participant_id: f.dataset.participantId, source: f.dataset.source, video: f.dataset.video,
          name: f.querySelector('figcaption .tile-name')?.textContent.trim() || '',
          muted_badge: !!badge && !badge.hidden,
          avatar: avatar && !avatar.hidden ? avatar.textContent.trim() : null,
          video_size: v ? [v.videoWidth, v.videoHeight] : null,
          video_label: v?.getAttribute('aria-label') || null};
})"""


async def inbound_stats(page: Page) -> dict[str, dict[str, Any]] | None:
    return await page.evaluate(INBOUND_STATS_JS)


async def audio_peak(page: Page, participant_id: str, reads: int = 4) -> dict[str, Any] | None:
    return await page.evaluate(AUDIO_PEAK_JS, [participant_id, reads])


async def all_remote_tiles(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate(TILES_JS)


# ------------------------------------------------------------------ the sitting panels (chair console)

# What the "Séance" panel shows, read from the DOM (not from the client's state).
SITTING_PANEL_JS = """() => {
  const text = (sel) => document.querySelector(sel)?.textContent.trim() ?? null;
  const visible = (sel) => { const el = document.querySelector(sel); return !!el && !el.closest('[hidden]'); };
  return {
    view: document.body.dataset.view,
    status: text('#status-line'),
    current_item: text('#current-item'),
    floor: document.querySelector('#floor-line')?.dataset.participantId || null,
    floor_text: text('#floor-line'),
    timer: visible('#speech-timer') ? text('#speech-timer-text') : null,
    queue: [...document.querySelectorAll('#queue-list li')].map(li => ({
      participant_id: li.dataset.participantId, point_of_order: li.dataset.pointOfOrder === 'true'})),
    quorum: text('#quorum-line'),
    open_vote: visible('#open-vote') ? {question: text('#open-vote-question'), count: text('#open-vote-count')} : null,
    chair_panel: visible('#chair-panel'),
    results: [...document.querySelectorAll('#vote-results .vote-result')].map(r => ({
      id: r.dataset.voteId, adopted: r.dataset.adopted, casting_vote: r.dataset.castingVote === 'true',
      question: r.querySelector('.vote-question')?.textContent.trim(),
      counts: Object.fromEntries([...r.querySelectorAll('.vote-counts li')].map(li =>
        [li.dataset.choice, Number(li.querySelector('.vote-count').textContent)])),
      outcome: r.querySelector('.vote-outcome')?.textContent.trim(),
      rows: [...r.querySelectorAll('tbody tr')].map(tr => ({
        member_id: tr.dataset.memberId, choice: tr.dataset.choice,
        cells: [...tr.children].map(c => c.textContent.trim())})),
    })),
  };
}"""


async def sitting_panel(page: Page) -> dict[str, Any]:
    return await page.evaluate(SITTING_PANEL_JS)
