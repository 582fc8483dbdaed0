"""HTTPS served by the server itself, HSTS, and the WebSocket's origin check.

``tls.certificate`` + ``tls.private_key`` serve a certificate the town already has;
``tls.self_signed`` generates one on first start (ECDSA P-256, one year, its names
the server's own) into ``DATA_DIR/tls/`` and reuses it afterwards. Either way the
SHA-256 fingerprint is printed at start, so that whoever opens the first link on
the LAN can compare it with what the browser shows. See docs/deployment.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from yarl import URL

from config import Settings

log = logging.getLogger(__name__)

HSTS = "max-age=31536000"
VALIDITY = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)  # a self-signed certificate this close to its end is replaced
CERT_NAME, KEY_NAME = "self-signed.crt", "self-signed.key"
WILDCARD_HOSTS = ("", "0.0.0.0", "::")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# ---------------------------------------------------------------- the server's names


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    return host == "localhost" or (_is_ip(host) and ipaddress.ip_address(host).is_loopback)


def server_names(settings: Settings) -> list[str]:
    """The names and addresses browsers may use to reach this server (certificate and origins)."""
    names: list[str] = []
    if settings.public_url:
        names.append(URL(settings.public_url).host or "")
    host = settings.host.strip("[]")
    if host not in WILDCARD_HOSTS:
        names.append(host)
    else:  # listening everywhere: the machine's name and the addresses offered to browsers
        names.append(socket.gethostname())
    names += settings.ice.host_addresses
    if host in WILDCARD_HOSTS or _is_loopback(host):
        names += LOOPBACK_NAMES
    out: list[str] = []
    for name in names:
        name = name.strip("[]").lower()
        if name and name not in out:
            out.append(name)
    return out


# ---------------------------------------------------------------- certificates


def fingerprint(cert_file: Path) -> str:
    """SHA-256 of the certificate's DER form, as browsers show it (AB:CD:...)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = []
    for name in names:
        if _is_ip(name):
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        else:
            general.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(general)


def _covers(cert: x509.Certificate, names: list[str]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    have |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return all((str(ipaddress.ip_address(n)) if _is_ip(n) else n) in have for n in names)


def _reusable(cert_file: Path, key_file: Path, names: list[str]) -> bool:
    if not (cert_file.is_file() and key_file.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except ValueError:
        log.warning("the self-signed certificate in %s is unreadable: replacing it", cert_file.parent)
        return False
    if key.public_key() != cert.public_key():
        log.warning("the self-signed certificate and its key do not match: replacing them")
        return False
    if cert.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE:
        log.warning("the self-signed certificate ends on %s: replacing it", cert.not_valid_after_utc.date())
        return False
    if not _covers(cert, names):
        log.warning("the self-signed certificate does not name %s: replacing it", ", ".join(names))
        return False
    return True


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def generate_self_signed(names: list[str], cert_file: Path, key_file: Path) -> None:
    """A new ECDSA P-256 key (mode 0600) and a one-year self-signed certificate for ``names``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hemicycle (self-signed)"),
        ]
    )
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_atomically(key_file, key_pem, 0o600)
    _write_atomically(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def self_signed_files(settings: Settings) -> tuple[Path, Path]:
    """The self-signed certificate and key in DATA_DIR/tls/, created or renewed when needed."""
    directory = settings.data_dir / "tls"
    cert_file, key_file = directory / CERT_NAME, directory / KEY_NAME
    names = server_names(settings)
    if not _reusable(cert_file, key_file, names):
        generate_self_signed(names, cert_file, key_file)
        log.info("generated a self-signed certificate for %s", ", ".join(names))
    return cert_file, key_file


def certificate_files(settings: Settings) -> tuple[Path, Path] | None:
    """Which certificate and key to serve, or None for plain HTTP. Bad settings end the start."""
    tls = settings.tls
    if tls.self_signed:
        if tls.certificate or tls.private_key:
            raise SystemExit("hemicycle: tls.self_signed excludes tls.certificate and tls.private_key")
        return self_signed_files(settings)
    if tls.certificate is None and tls.private_key is None:
        return None
    if tls.certificate is None or tls.private_key is None:
        raise SystemExit("hemicycle: tls.certificate and tls.private_key go together")
    for path in (tls.certificate, tls.private_key):
        if not path.is_file():
            raise SystemExit(f"hemicycle: TLS file not found: {path}")
    return tls.certificate, tls.private_key


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context ``hemicycle serve`` listens with (TLS 1.2 or later); None: plain HTTP.

    Prints the certificate's SHA-256 fingerprint, for the administrator to compare.
    """
    files = certificate_files(settings)
    if files is None:
        return None
    cert_file, key_file = files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    print(f"TLS certificate {cert_file} SHA-256 fingerprint {fingerprint(cert_file)}", flush=True)
    return context


# ---------------------------------------------------------------- HSTS and origins


def hsts_wanted(settings: Settings) -> bool:
    """HSTS only when the pages are really served over HTTPS: by us, or by a proxy in front."""
    return settings.tls.enabled or (settings.public_url or "").lower().startswith("https://")


def _origin(url: str) -> str:
    parsed = URL(url)
    return str(parsed.origin()).lower() if parsed.is_absolute() else url.lower()


def own_origins(settings: Settings, port: int) -> set[str]:
    """The web origins of this server: public_url's, else every name it answers to on ``port``."""
    origins = {_origin(o) for o in settings.allowed_origins}
    if settings.public_url:
        origins.add(_origin(settings.public_url))
        return origins
    scheme = "https" if settings.tls.enabled else "http"
    for name in server_names(settings):
        host = f"[{name}]" if ":" in name else name
        origins.add(_origin(f"{scheme}://{host}:{port}"))
    return origins


def check_origin(request: web.Request, settings: Settings) -> None:
    """Refuse (HTTP 403) a WebSocket opened by a page of another web site.

    Browsers always send ``Origin`` on a WebSocket; other clients (aiortc peers, WHIP
    tools) send none and are let through: their invitation token still decides.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = sockname[1] if sockname else settings.port
    if _origin(origin) not in own_origins(settings, port):
        log.warning("WebSocket from a foreign origin refused: %.100s", origin)
        raise web.HTTPForbidden(text=f"origin {origin[:100]} not allowed (see allowed_origins)\n")
