"""HTTPS served by ``hemicycle serve`` itself: a self-signed certificate made once and
reused, its fingerprint printed, /healthz and the WebSocket over TLS, HSTS."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from config import Settings
from signaling import tls
from signaling.tokens import TokenSigner

REPO = Path(__file__).resolve().parent.parent


async def _serve(data_dir: Path) -> tuple[asyncio.subprocess.Process, list[str], str]:
    """Start the real server with tls.self_signed; return it, its stdout lines and base URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMICYCLE_")}
    env.update(HEMICYCLE_DATA_DIR=str(data_dir), HEMICYCLE_TLS__SELF_SIGNED="true", PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling", "serve", "--host", "127.0.0.1", "--port", "0", "--no-demo",
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line, f"server exited before it was ready: {lines}"
        lines.append(line.strip())
        if line.startswith("HEMICYCLE READY "):
            return proc, lines, line.split()[-1]


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    await asyncio.wait_for(proc.wait(), 10)


def _printed_fingerprint(lines: list[str]) -> str:
    found = [line.split("SHA-256 fingerprint ")[1] for line in lines if "SHA-256 fingerprint " in line]
    assert len(found) == 1, lines
    return found[0]


async def test_self_signed_https_and_wss_with_hsts_and_the_same_certificate_next_time(tmp_path: Path) -> None:
    cert_file = tmp_path / "tls" / "self-signed.crt"
    key_file = tmp_path / "tls" / "self-signed.key"
    proc, lines, base = await _serve(tmp_path)
    try:
        assert base.startswith("https://127.0.0.1:")
        assert key_file.stat().st_mode & 0o777 == 0o600
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        assert cert.signature_algorithm_oid.dotted_string == "1.2.840.10045.4.3.2"  # ecdsa-with-SHA256
        assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
        days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
        assert 364 <= days <= 366
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
        assert "localhost" in san.get_values_for_type(x509.DNSName)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in eku
        # the fingerprint printed is the one of the certificate the server presents
        printed = _printed_fingerprint(lines)
        host, port = base.removeprefix("https://").split(":")
        served_pem = await asyncio.to_thread(ssl.get_server_certificate, (host, int(port)))
        served = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served_pem)).hexdigest()
        assert printed == bytes.fromhex(served).hex(":").upper() == tls.fingerprint(cert_file)
        trusted = ssl.create_default_context(cafile=str(cert_file))
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz", ssl=trusted) as response:
                assert response.status == 200 and (await response.json())["status"] == "ok"
                assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # not trusted: refused
                await http.get(base + "/healthz", ssl=ssl.create_default_context())
            signer = TokenSigner((tmp_path / "secret.key").read_bytes())
            token = signer.mint("demo", "Camille Martin", "councillor", lifetime=600)
            wss = base.replace("https", "wss", 1) + "/ws"
            async with http.ws_connect(wss, ssl=trusted, origin=base) as ws:
                await ws.send_str(json.dumps({"type": "hello", "version": 1, "token": token}))
                welcome = await ws.receive_json(timeout=10)
                assert welcome["type"] == "welcome" and welcome["you"]["name"] == "Camille Martin"
    finally:
        await _stop(proc)
    before = cert_file.read_bytes()
    proc, lines, base = await _serve(tmp_path)
    try:
        assert _printed_fingerprint(lines) == printed
        assert cert_file.read_bytes() == before
    finally:
        await _stop(proc)


def test_a_certificate_missing_names_is_renewed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, tls={"self_signed": True})
    cert_file, _ = tls.self_signed_files(settings)
    first = tls.fingerprint(cert_file)
    assert tls.fingerprint(tls.self_signed_files(settings)[0]) == first  # reused
    moved = Settings(data_dir=tmp_path, tls={"self_signed": True}, public_url="https://visio.mairie.example")
    assert tls.fingerprint(tls.self_signed_files(moved)[0]) != first
    san = x509.load_pem_x509_certificate(cert_file.read_bytes()).extensions
    names = san.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "visio.mairie.example" in names


def test_tls_settings_and_hsts(tmp_path: Path) -> None:
    assert tls.certificate_files(Settings(data_dir=tmp_path)) is None
    assert Settings(tls={"self_signed": True}).base_url == "https://127.0.0.1:8080"
    assert Settings().base_url == "http://127.0.0.1:8080"
    with pytest.raises(SystemExit, match="go together"):
        tls.certificate_files(Settings(tls={"certificate": tmp_path / "a.crt"}))
    with pytest.raises(SystemExit, match="not found"):
        tls.certificate_files(Settings(tls={"certificate": tmp_path / "a.crt", "private_key": tmp_path / "a.key"}))
    cert, key = tmp_path / "own.crt", tmp_path / "own.key"
    tls.generate_self_signed(["visio.mairie.example"], cert, key)
    own = Settings(tls={"certificate": cert, "private_key": key})
    assert tls.certificate_files(own) == (cert, key)
    context = tls.server_context(own)
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.hsts_wanted(Settings(tls={"certificate": cert, "private_key": key}))
    assert tls.hsts_wanted(Settings(public_url="https://visio.mairie.example"))  # behind a reverse proxy
    assert not tls.hsts_wanted(Settings(public_url="http://visio.mairie.example"))
    assert not tls.hsts_wanted(Settings())


async def test_no_hsts_on_plain_http(server) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as http, http.get(server.base_url + "/healthz") as response:
        assert response.status == 200 and "Strict-Transport-Security" not in response.headers
