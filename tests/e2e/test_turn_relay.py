"""Councillors behind a network that allows nothing but TURN: media through a real coturn.

A real ``turnserver`` (Debian ``coturn``) on loopback with the TURN REST API secret
(``--use-auth-secret``), the real Hemicycle server configured with ``[turn]`` (URL and the
same secret), and two Chromium councillors whose RTCPeerConnections are forced to
``iceTransportPolicy: "relay"`` by an init script (a test-only wrapper: the product does not
change). Each must decode the other's video, over a selected candidate pair whose local
candidate is a ``relay`` candidate on coturn; coturn's log must show both allocations, under
the ``<expiry>:<seat id>`` usernames from the ``welcome``.

Everything is on loopback, so coturn needs ``--allow-loopback-peers`` (and a production
``denied-peer-ip=127.0.0.0-127.255.255.255`` must not be used here). Skips when
``turnserver`` is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from signaling.turn import mint

from .browser import frames_decoded, hemicycle_state, remote_tiles, tile_colour, wait_until
from .conftest import add_log

TURNSERVER = shutil.which("turnserver")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio,
    pytest.mark.skipif(TURNSERVER is None, reason="coturn is not installed (apt-get install -y coturn)"),
]

MEET_TIMEOUT = 25.0
RELAY_MIN_PORT, RELAY_MAX_PORT = 49160, 49260
COUNCILLORS = {"Alice Martin": "red", "Bruno Keller": "green"}

# Every RTCPeerConnection the page makes is forced to relay-only, like a browser on a network
# that blocks all UDP but the TURN server; the configurations received are kept for the test.
FORCE_RELAY_JS = """(() => {
  const Native = window.RTCPeerConnection;
  const configs = [];
  class RelayOnly extends Native {
    constructor(config, ...rest) {
      const forced = Object.assign({}, config || {}, {iceTransportPolicy: 'relay'});
      configs.push(JSON.parse(JSON.stringify(forced)));
      super(forced, ...rest);
    }
    setConfiguration(config) {
      return super.setConfiguration(Object.assign({}, config || {}, {iceTransportPolicy: 'relay'}));
    }
  }
  window.RTCPeerConnection = RelayOnly;
  window.__relayOnly = {configs};
})();"""

# For each of the client's two connections: the selected candidate pair and its candidates.
SELECTED_PAIR_JS = """async () => {
  const conn = window.hemicycle?.connection;
  const out = {};
  for (const name of ['publishPc', 'subscribePc']) {
    const pc = conn && conn[name];
    if (!pc) { out[name] = null; continue; }
    const stats = await pc.getStats();
    const byId = new Map();
    stats.forEach(s => byId.set(s.id, s));
    let pair = null;
    stats.forEach(s => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId) || pair;
    });
    if (!pair) stats.forEach(s => {
      if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    });
    const cand = (id) => {
      const c = id && byId.get(id);
      return c ? {candidateType: c.candidateType, address: c.address, port: c.port, protocol: c.protocol,
                  relayProtocol: c.relayProtocol || null, url: c.url || null} : null;
    };
    const localTypes = [];
    stats.forEach(s => { if (s.type === 'local-candidate') localTypes.push(s.candidateType); });
    out[name] = {
      connectionState: pc.connectionState,
      iceTransportPolicy: pc.getConfiguration().iceTransportPolicy,
      pair: pair ? {state: pair.state, nominated: !!pair.nominated, bytesSent: pair.bytesSent,
                    bytesReceived: pair.bytesReceived} : null,
      local: cand(pair && pair.localCandidateId),
      remote: cand(pair && pair.remoteCandidateId),
      localTypes,
    };
  }
  return out;
}"""


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free UDP+TCP port")


@dataclass
class Coturn:
    port: int
    secret: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def _running_coturn(request: pytest.FixtureRequest, tmp_path: Path, args: list[str], port: int, secret: str):
    """Run ``turnserver`` with ``args`` (+ pid file and database in ``tmp_path``) until the block ends."""
    assert TURNSERVER is not None
    log_path = tmp_path / "coturn.log"
    cmd = [
        TURNSERVER,
        *args,
        f"--static-auth-secret={secret}",
        f"--pidfile={tmp_path / 'turnserver.pid'}",
        f"--userdb={tmp_path / 'turndb'}",  # not /var/lib/turn/turndb
    ]
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    add_log(request, "coturn log", lambda: log_path.read_text(errors="replace"))
    try:
        deadline = time.monotonic() + 10
        while f"UDP listener opened on: 127.0.0.1:{port}" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"coturn did not start (exit {proc.poll()}):\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        yield Coturn(port, secret, proc, log_path)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log_file.close()


@pytest.fixture
def coturn(request: pytest.FixtureRequest, tmp_path: Path):
    """A real coturn on 127.0.0.1 with the TURN REST API shared secret, verbose log to a file."""
    port = free_udp_tcp_port()
    args = [
        "-n",  # no configuration file
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={RELAY_MIN_PORT}",
        f"--max-port={RELAY_MAX_PORT}",
        "--use-auth-secret",
        "--realm=test",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--allow-loopback-peers",  # required on loopback; never in production
        "--no-multicast-peers",
        "--no-tcp-relay",
        "--fingerprint",
        "--stale-nonce=600",
        "--log-file=stdout",
        "--simple-log",
        "--verbose",  # logs each allocation with its username
    ]
    with _running_coturn(request, tmp_path, args, port, secrets.token_hex(24)) as server:
        yield server


async def _allocate(port: int, username: str, password: str) -> tuple[str, int]:
    from aioice.turn import create_turn_endpoint

    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", port), username, password, lifetime=60
    )
    try:
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        return relayed
    finally:
        transport.close()


async def test_coturn_accepts_minted_credentials_and_refuses_expired_or_forged(coturn: Coturn) -> None:
    """The scheme as coturn itself checks it: fresh credential yes, expired or wrong secret no."""
    from aioice.stun import TransactionFailed

    good = mint(coturn.secret, "seat-ok", ttl=600)
    address, port = await _allocate(coturn.port, good.username, good.credential)
    assert address == "127.0.0.1" and RELAY_MIN_PORT <= port <= RELAY_MAX_PORT

    expired = mint(coturn.secret, "seat-late", ttl=60, now=time.time() - 120)
    forged = mint("not-the-secret", "seat-forged", ttl=600)
    for cred in (expired, forged):
        with pytest.raises(TransactionFailed) as failed:
            await _allocate(coturn.port, cred.username, cred.credential)
        assert failed.value.response.attributes["ERROR-CODE"][0] == 401, cred

    log = coturn.log()
    assert f"username=<{good.username}>" in log and "ALLOCATE processed, success" in log
    assert f"username=<{expired.username}>" not in log and f"username=<{forged.username}>" not in log


DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "coturn" / "turnserver.conf"
HEMICYCLE_PEER = "127.0.0.5"  # stands for the Hemicycle server's address (the conf's allowed-peer-ip)
PRIVATE_PEER = "127.0.0.1"  # stands for the local network: in a denied range
PUBLIC_PEER = "127.1.0.1"  # stands for the public internet: in no denied range (127/8 is narrowed below)


def _deploy_conf_on_loopback(tmp_path: Path, port: int, tls_port: int) -> Path:
    """deploy/coturn/turnserver.conf with only what must differ here changed: addresses, ports,
    a self-signed certificate, the allowed peer, logs to stdout. Everything else as shipped."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=turn.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    changes = {
        "listening-port=3478": f"listening-port={port}\nlistening-ip=127.0.0.1\nrelay-ip=127.0.0.1",
        "tls-listening-port=443": f"tls-listening-port={tls_port}",
        "min-port=49152": f"min-port={RELAY_MIN_PORT}",
        "max-port=65535": f"max-port={RELAY_MAX_PORT}",
        "cert=/etc/coturn/certs/fullchain.pem": f"cert={cert}",
        "pkey=/etc/coturn/certs/privkey.pem": f"pkey={key}",
        "allowed-peer-ip=203.0.113.7": f"allowed-peer-ip={HEMICYCLE_PEER}",
        # the rest of 127/8 plays the public internet, to catch a denied range that is too wide
        "denied-peer-ip=127.0.0.0-127.255.255.255": "denied-peer-ip=127.0.0.0-127.0.255.255",
        "syslog": "log-file=stdout\nsimple-log\nverbose",
    }
    lines = DEPLOY_CONF.read_text(encoding="utf-8").splitlines()
    for old, new in changes.items():
        assert lines.count(old) == 1, f"{DEPLOY_CONF}: expected one line {old!r}"
        lines[lines.index(old)] = new
    assert not any(line.startswith("static-auth-secret") for line in lines), "a secret is active in the shipped conf"
    conf = tmp_path / "turnserver.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return conf


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for a test certificate")
async def test_deploy_config_relays_to_the_hemicycle_server_only(request: pytest.FixtureRequest, tmp_path: Path):
    """The shipped production conf, on loopback: it loads, TURN/TLS answers, and the relay reaches
    the allowed Hemicycle address and the "public internet" (127.1/16) but not a denied range
    (127.0/16 stands for the private ranges).

    ``--allow-loopback-peers`` lifts coturn's built-in loopback ban so that the conf's own
    ``denied-peer-ip``/``allowed-peer-ip`` lines are what is tested."""
    from aioice.turn import create_turn_endpoint

    port, tls_port = free_udp_tcp_port(), free_udp_tcp_port()
    conf = _deploy_conf_on_loopback(tmp_path, port, tls_port)
    secret = secrets.token_hex(24)
    loop = asyncio.get_running_loop()
    with _running_coturn(request, tmp_path, ["-c", str(conf), "--allow-loopback-peers"], port, secret) as turn:
        log = turn.log()
        assert "CONFIG ERROR" not in log and "ERROR: " not in log, log
        assert f"TLS/TCP listener opened on : 127.0.0.1:{tls_port}" in log

        allowed_t, allowed = await loop.create_datagram_endpoint(_Datagrams, local_addr=(HEMICYCLE_PEER, 0))
        public_t, public = await loop.create_datagram_endpoint(_Datagrams, local_addr=(PUBLIC_PEER, 0))
        denied_t, denied = await loop.create_datagram_endpoint(_Datagrams, local_addr=(PRIVATE_PEER, 0))
        cred = mint(secret, "seat-prod", ttl=600)
        relay_t, relay = await create_turn_endpoint(_Datagrams, ("127.0.0.1", port), cred.username, cred.credential)
        try:
            relayed = relay_t.get_extra_info("sockname")
            relay_t.sendto(b"to hemicycle", allowed_t.get_extra_info("sockname"))
            relay_t.sendto(b"to the internet", public_t.get_extra_info("sockname"))
            relay_t.sendto(b"to the local network", denied_t.get_extra_info("sockname"))
            await wait_until(
                lambda: _ready(allowed.received and public.received and relay.errors), 10, 0.1, what="relays"
            )
            assert allowed.received == [(b"to hemicycle", relayed)]
            assert public.received == [(b"to the internet", relayed)]
            assert denied.received == []
            (refused,) = relay.errors
            assert refused.response.attributes["ERROR-CODE"][0] == 403, refused  # type: ignore[attr-defined]
        finally:
            relay_t.close()
            for t in (allowed_t, public_t, denied_t):
                t.close()

        # TURN over TLS, as turns:...:443?transport=tcp (a self-signed certificate here)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        cred = mint(secret, "seat-tls", ttl=600)
        tls_t, _ = await create_turn_endpoint(
            _Datagrams, ("127.0.0.1", tls_port), cred.username, cred.credential, ssl=ctx, transport="tcp"
        )
        try:
            assert RELAY_MIN_PORT <= tls_t.get_extra_info("sockname")[1] <= RELAY_MAX_PORT
        finally:
            tls_t.close()
            await asyncio.sleep(0.2)  # let the allocation be deleted


async def _ready(value: Any) -> bool:
    return bool(value)


def _config(coturn: Coturn, transport: str) -> str:
    return f"""
[[sittings]]
id = "turn-test"
title = "Séance — TURN TEST"
regime = "intercommunal"
mode = "remote"

[[sittings.agenda]]
id = "1"
title = "Questions diverses"

[turn]
urls = ["turn:127.0.0.1:{coturn.port}?transport={transport}"]
secret = "{coturn.secret}"
ttl = 3600
"""


async def _other_tile(page, name: str) -> str | None:
    for t in await remote_tiles(page):
        if t["name"] == name:
            return str(t["participant_id"])
    return None


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_councillors_meet_through_turn_only(
    transport: str, coturn: Coturn, server_factory, browser_factory, fake_media, tmp_path: Path
) -> None:
    server = server_factory(_config(coturn, transport))
    names = list(COUNCILLORS)
    urls, councillors = await asyncio.gather(
        asyncio.gather(*(asyncio.to_thread(server.invite, n) for n in names)),
        asyncio.gather(*(browser_factory(n, fake_media[COUNCILLORS[n]]) for n in names)),
    )
    for c in councillors:
        await c.page.add_init_script(FORCE_RELAY_JS)
    for c, url in zip(councillors, urls):
        await c.page.goto(url)
        await c.page.locator("#join-button").click(timeout=15_000)

    seats: dict[str, str] = {}
    for c in councillors:
        other = next(n for n in names if n != c.name)
        pid = await wait_until(lambda c=c, o=other: _other_tile(c.page, o), MEET_TIMEOUT, what=f"{c.name}: tile")
        colour = COUNCILLORS[other]
        await wait_until(
            lambda c=c, pid=pid, colour=colour: _is(tile_colour(c.page, pid), colour),
            MEET_TIMEOUT,
            what=f"{c.name}: {other}'s tile shows {colour}",
        )
        before = (await frames_decoded(c.page) or {}).get(pid, 0)
        await asyncio.sleep(1.5)
        after = (await frames_decoded(c.page) or {}).get(pid, 0)
        assert after > before, f"{c.name}: video of {other} not decoding through TURN ({before} -> {after})"

        # the configuration the page received: the TURN URL and a credential for this seat
        state = await hemicycle_state(c.page)
        assert state is not None
        seats[c.name] = seat = state["me"]["id"]
        configs: list[dict[str, Any]] = await c.page.evaluate("() => window.__relayOnly.configs")
        assert len(configs) == 2, configs  # publishing and subscribing connections
        for config in configs:
            assert config["iceTransportPolicy"] == "relay"
            (turn,) = [s for s in config["iceServers"] if any(u.startswith("turn:") for u in s["urls"])]
            assert turn["urls"] == [f"turn:127.0.0.1:{coturn.port}?transport={transport}"]
            expiry, who = turn["username"].split(":", 1)
            assert who == seat and int(expiry) > time.time() + 3000

        # the selected pair's local candidate is a relay candidate on coturn, for both connections
        pairs = await c.page.evaluate(SELECTED_PAIR_JS)
        for pc_name, info in pairs.items():
            assert info is not None, f"{c.name}: no {pc_name}"
            where = f"{c.name} {pc_name}: {json.dumps(info)}"
            assert info["connectionState"] == "connected", where
            assert info["iceTransportPolicy"] == "relay", where
            assert set(info["localTypes"]) == {"relay"}, where  # nothing but relay candidates gathered
            assert info["pair"] and info["pair"]["state"] == "succeeded", where
            assert info["pair"]["bytesReceived"] > 0 and info["pair"]["bytesSent"] > 0, where
            local, remote = info["local"], info["remote"]
            assert local["candidateType"] == "relay", where
            assert local["relayProtocol"] == transport, where
            assert local["address"] == "127.0.0.1" and RELAY_MIN_PORT <= local["port"] <= RELAY_MAX_PORT, where
            assert remote["address"] == "127.0.0.1", where  # the SFU's own host candidate

    # coturn allocated relays for both councillors, under the usernames from the welcome
    log = coturn.log()
    for name, seat in seats.items():
        allocations = [
            line for line in log.splitlines() if "new, realm=<test>, username=<" in line and f":{seat}>" in line
        ]
        assert allocations, f"no allocation for {name} (seat {seat}) in coturn's log"
    assert log.count("ALLOCATE processed, success") >= 2 * len(seats)

    # the server never wrote the secret or a credential anywhere
    server_output = "\n".join(server.stdout_lines) + (tmp_path / "server-stderr.log").read_text(errors="replace")
    assert coturn.secret not in server_output
    for c in councillors:
        for config in await c.page.evaluate("() => window.__relayOnly.configs"):
            for s in config["iceServers"]:
                if s.get("credential"):
                    assert s["credential"] not in server_output


async def _is(value_coro, expected) -> bool:
    with contextlib.suppress(Exception):
        return await value_coro == expected
    return False
