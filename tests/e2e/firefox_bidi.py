"""A minimal Firefox ESR driver over WebDriver BiDi, with aiohttp (no geckodriver here).

Enough for the end-to-end tests: start a headless Firefox with fake media, open a URL,
evaluate JavaScript returning JSON, click an element.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")

PREFS: dict[str, Any] = {
    # fake camera and microphone, no permission prompt, autoplay allowed
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.autoplay.block-webaudio": False,
    # ICE on loopback only, with the real address
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    # the separate socket process cannot bind UDP sockets here
    "network.process.enabled": False,
    # nothing phones home
    "app.update.disabledForTesting": True,
    "app.update.auto": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "",
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "extensions.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "browser.ping-centre.telemetry": False,
}


class BidiError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FirefoxBidi:
    def __init__(self, name: str = "firefox", prefs: dict[str, Any] | None = None) -> None:
        self.name = name
        self.prefs = {**PREFS, **(prefs or {})}
        self.profile = Path(tempfile.mkdtemp(prefix=f"hemicycle-firefox-{name}-"))
        self.port = _free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.console: list[str] = []  # the pages' console messages and uncaught errors
        self.context: str | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------ lifecycle

    async def start(self, timeout: float = 30) -> FirefoxBidi:
        if FIREFOX is None:
            raise FileNotFoundError("firefox-esr is not installed")
        (self.profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in self.prefs.items())
        )
        env = {
            **os.environ,
            "MOZ_HEADLESS": "1",
            "MOZ_CRASHREPORTER_DISABLE": "1",
            **({"MOZ_LOG": os.environ["HEMICYCLE_FF_MOZ_LOG"]} if os.environ.get("HEMICYCLE_FF_MOZ_LOG") else {}),
        }
        self.proc = await asyncio.create_subprocess_exec(
            FIREFOX,
            "--headless",
            "--no-remote",
            "--remote-debugging-port",
            str(self.port),
            "--profile",
            str(self.profile),
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        ready = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.create_task(self._read_stderr(ready)))
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            await self.close()
            raise BidiError(
                f"Firefox did not open BiDi in {timeout}s:\n" + "\n".join(self.stderr_lines[-30:])
            ) from None
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(f"ws://127.0.0.1:{self.port}/session", max_msg_size=0)
        self._tasks.append(asyncio.create_task(self._read_ws()))
        await self.send("session.new", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})
        await self.send("session.subscribe", {"events": ["log.entryAdded"]})
        tree = await self.send("browsingContext.getTree", {"maxDepth": 0})
        contexts = tree.get("contexts") or []
        if contexts:
            self.context = contexts[0]["context"]
        else:
            self.context = (await self.send("browsingContext.create", {"type": "tab"}))["context"]
        return self

    async def _read_stderr(self, ready: asyncio.Future) -> None:
        assert self.proc and self.proc.stderr
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.stderr_lines.append(line)
            if "WebDriver BiDi listening on" in line and not ready.done():
                ready.set_result(line)
        if not ready.done():
            ready.set_exception(BidiError("Firefox exited:\n" + "\n".join(self.stderr_lines[-30:])))

    async def _read_ws(self) -> None:
        assert self._ws
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id"), None) if "id" in data else None
            if fut is not None and not fut.done():
                if data.get("type") == "error":
                    fut.set_exception(BidiError(f"{data.get('error')}: {data.get('message')}"))
                else:
                    fut.set_result(data.get("result", {}))
            elif data.get("type") == "event":
                if data.get("method") == "log.entryAdded":
                    p = data.get("params", {})
                    self.console.append(f"[{p.get('level')}] {p.get('text')}")
                else:
                    self.events.append(data)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BidiError("BiDi connection closed"))

    async def close(self) -> None:
        """Tear down hard, like a councillor whose laptop dies: no clean leave."""
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own session: Firefox and its children
            except ProcessLookupError:
                pass
            await self.proc.wait()
        for t in self._tasks:
            t.cancel()
        shutil.rmtree(self.profile, ignore_errors=True)

    # ------------------------------------------------------------ commands

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> dict:
        assert self._ws is not None, "not started"
        cmd_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[cmd_id] = fut
        await self._ws.send_str(json.dumps({"id": cmd_id, "method": method, "params": params or {}}))
        return await asyncio.wait_for(fut, timeout)

    async def navigate(self, url: str, wait: str = "complete") -> dict:
        return await self.send("browsingContext.navigate", {"context": self.context, "url": url, "wait": wait})

    async def evaluate(self, expression: str, timeout: float = 30) -> Any:
        """Evaluate an expression (awaited if a promise) and return its JSON value."""
        wrapped = f"(async () => JSON.stringify(await ({expression})))()"
        res = await self.send(
            "script.evaluate",
            {
                "expression": wrapped,
                "target": {"context": self.context},
                "awaitPromise": True,
                "resultOwnership": "none",
            },
            timeout=timeout,
        )
        if res.get("type") == "exception":
            details = res.get("exceptionDetails", {})
            raise BidiError(f"JS exception: {details.get('text')}")
        value = res.get("result", {})
        if value.get("type") == "undefined":
            return None
        return json.loads(value["value"])

    async def call(self, function_source: str, *args: Any, timeout: float = 30) -> Any:
        """Call a JS function (source text, e.g. ``"(x) => x + 1"``) with JSON arguments."""
        arglist = ", ".join(json.dumps(a) for a in args)
        return await self.evaluate(f"({function_source})({arglist})", timeout=timeout)

    async def click(self, selector: str) -> None:
        ok = await self.call(
            "(s) => { const e = document.querySelector(s); if (!e) return false; e.click(); return true; }", selector
        )
        if not ok:
            raise BidiError(f"no element matches {selector!r}")

    async def __aenter__(self) -> FirefoxBidi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
