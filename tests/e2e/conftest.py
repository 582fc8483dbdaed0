"""Fixtures of the end-to-end tests: the real server as a subprocess, real browsers.

Run inside a network namespace that has only ``lo`` (see tests/e2e/README.md)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from . import media as media_mod

REPO = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("HEMICYCLE_PYTHON", sys.executable)
READY_RE = re.compile(r"HEMICYCLE READY (http://\S+)")
SITTING_ID = "test-sitting"
URL_RE = re.compile(r"(https?://\S+/join#token=\S+)")
STARTUP_TIMEOUT = 20.0

LOGS = pytest.StashKey[list]()  # [(title, callable returning text)] shown when a test fails


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test with real browsers against the real server")
    config.addinivalue_line("markers", "programme: the server runs the public programme worker (640x360@15)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for title, get_text in item.stash.get(LOGS, []):
            try:
                text = get_text()
            except Exception as e:
                text = f"<unavailable: {e!r}>"
            if text:
                rep.sections.append((f"{title} ({rep.when})", text[-20000:]))


def add_log(request: pytest.FixtureRequest, title: str, get_text) -> None:
    request.node.stash.setdefault(LOGS, []).append((title, get_text))


def loopback_only() -> bool:
    """True inside a network namespace whose only interface is lo (/sys may show the host's)."""
    try:
        return {name for _index, name in socket.if_nameindex()} <= {"lo"}
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _only_in_loopback_namespace(request: pytest.FixtureRequest) -> None:
    """Browsers gather ICE candidates on every interface: keep e2e runs off the real network."""
    if (
        request.node.get_closest_marker("e2e")
        and not loopback_only()
        and os.environ.get("HEMICYCLE_E2E_ALLOW_HOST_NETWORK") != "1"
    ):
        pytest.skip("e2e tests run only in a network namespace with just `lo` (see tests/e2e/README.md)")


def ensure_loopback_default_route() -> None:
    """Firefox needs a default route with a source address in the namespace.

    With ``default dev lo`` alone it takes its "default address" as 0.0.0.0, offers only
    0.0.0.0 host candidates and never pairs them with the server's 127.0.0.1 (ICE fails).
    With ``src 127.0.0.1`` it offers 127.0.0.1 and ::1 and connects. Only ever done inside
    a private namespace that has nothing but lo.
    """
    if not loopback_only() or os.geteuid() != 0:
        return
    route = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True).stdout
    if "src 127.0.0.1" not in route:
        subprocess.run(["ip", "route", "replace", "default", "dev", "lo", "src", "127.0.0.1"], check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ media


@pytest.fixture(scope="session")
def fake_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, media_mod.FakeMedia]:
    """One .y4m and one .wav per colour (red/green/blue/yellow), made once per run."""
    return media_mod.generate(tmp_path_factory.mktemp("fake-media"))


# ------------------------------------------------------------------ server


@dataclass
class Server:
    base_url: str
    port: int
    sitting_id: str
    secret_file: Path
    proc: subprocess.Popen
    stdout_lines: list[str] = field(default_factory=list)

    def invite(self, name: str, role: str = "councillor") -> str:
        """A join URL from the real ``invite`` command (blocking: call via asyncio.to_thread)."""
        cmd = [
            PYTHON,
            "-m",
            "signaling",
            "invite",
            "--base-url",
            self.base_url,
            "--name",
            name,
            "--role",
            role,
            "--sitting",
            self.sitting_id,
            "--secret-file",
            str(self.secret_file),
        ]
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30)
        found = URL_RE.search(res.stdout)
        if res.returncode != 0 or not found:
            raise AssertionError(
                f"invite failed ({res.returncode}): {' '.join(cmd)}\nstdout: {res.stdout}\nstderr: {res.stderr}"
            )
        return found.group(1)


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path):
    """The real server on 127.0.0.1 and a free port, with a fresh sitting titled TEST."""
    with _running_server(request, tmp_path, ["--sitting", SITTING_ID, "--sitting-title", "TEST"]) as srv:
        yield srv


@pytest.fixture
def server_factory(request: pytest.FixtureRequest, tmp_path: Path):
    """``start(config_toml)`` -> the real server started with ``serve --config FILE``.

    The TOML text defines the sittings (regime, mode, agenda...); the first sitting's id is
    the one invitations are minted for. One server per test; stopped at teardown.
    """
    import tomllib
    from contextlib import ExitStack

    with ExitStack() as stack:

        def start(config_toml: str) -> Server:
            config = tmp_path / "hemicycle.toml"
            config.write_text(config_toml, encoding="utf-8")
            sitting_id = tomllib.loads(config_toml)["sittings"][0]["id"]
            srv = stack.enter_context(_running_server(request, tmp_path, ["--config", str(config)], sitting_id))
            return srv

        yield start


@contextmanager
def _running_server(
    request: pytest.FixtureRequest, tmp_path: Path, sitting_args: list[str], sitting_id: str = SITTING_ID
):
    port = free_port()
    secret_file = tmp_path / "invite-secret"
    secret_file.write_text(secrets.token_hex(32) + "\n")
    secret_file.chmod(0o600)
    stderr_path = tmp_path / "server-stderr.log"
    cmd = [
        PYTHON,
        "-m",
        "signaling",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *sitting_args,
        "--secret-file",
        str(secret_file),
        "--no-demo",
        "--log-level",
        "DEBUG" if os.environ.get("HEMICYCLE_E2E_DEBUG") else "INFO",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMICYCLE_")}
    env.update(PYTHONUNBUFFERED="1", HEMICYCLE_DATA_DIR=str(tmp_path / "data"))
    # The programme worker (720p30 encoding) runs only in the tests about it (marker "programme").
    if request.node.get_closest_marker("programme") is None:
        env["HEMICYCLE_PROGRAMME__ENABLED"] = "false"
    else:
        env.update(HEMICYCLE_PROGRAMME__WIDTH="640", HEMICYCLE_PROGRAMME__HEIGHT="360", HEMICYCLE_PROGRAMME__FPS="15")
    stderr_file = open(stderr_path, "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr_file, text=True, env=env, start_new_session=True
    )
    add_log(request, "hemicycle server stderr", lambda: stderr_path.read_text(errors="replace"))
    lines: list[str] = []
    add_log(request, "hemicycle server stdout", lambda: "\n".join(lines))
    ready = threading.Event()
    found: dict[str, str] = {}

    def pump() -> None:  # keeps reading so that the server never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if (m := READY_RE.search(line)) and not ready.is_set():
                found["url"] = m.group(1).rstrip("/")
                ready.set()
        ready.set()

    threading.Thread(target=pump, name="server-stdout", daemon=True).start()
    try:
        if not ready.wait(STARTUP_TIMEOUT) or "url" not in found:
            raise AssertionError(
                f"server not ready in {STARTUP_TIMEOUT}s (exit {proc.poll()}): "
                f"{' '.join(cmd)}\nstderr:\n{stderr_path.read_text()[-5000:]}"
            )
        yield Server(found["url"], port, sitting_id, secret_file, proc, lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        stderr_file.close()


# ------------------------------------------------------------------ browsers


@pytest_asyncio.fixture
async def browser_factory(request: pytest.FixtureRequest):
    """``await launch(name, fake_media_entry)`` -> a Councillor in its own Chromium process."""
    from playwright.async_api import async_playwright

    from .browser import launch_chromium

    launched = []
    async with async_playwright() as pw:

        async def launch(name: str, m: media_mod.FakeMedia | None = None):
            c = await launch_chromium(pw, name, m.y4m if m else None, m.wav if m else None)
            launched.append(c)
            add_log(request, f"console of {name} (Chromium)", lambda: "\n".join(c.console))
            return c

        try:
            yield launch
        finally:
            for c in launched:
                await c.close()


@pytest_asyncio.fixture
async def firefox_factory(request: pytest.FixtureRequest):
    """``await launch(name)`` -> a started FirefoxBidi; skips the test if firefox-esr is missing."""
    from .firefox_bidi import FIREFOX, FirefoxBidi

    if FIREFOX is None:
        pytest.skip("firefox-esr is not installed (apt-get install -y firefox-esr)")
    ensure_loopback_default_route()
    launched: list[FirefoxBidi] = []

    async def launch(name: str) -> FirefoxBidi:
        ff = FirefoxBidi(name)
        launched.append(ff)
        add_log(request, f"stderr of {name} (Firefox)", lambda: "\n".join(ff.stderr_lines))
        add_log(request, f"console of {name} (Firefox)", lambda: "\n".join(ff.console))
        return await ff.start()

    try:
        yield launch
    finally:
        for ff in launched:
            await ff.close()
