"""signaling/tokens.py: invitations are accepted only when signed by this server's key and unexpired."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from signaling.tokens import Invitation, TokenError, TokenSigner

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def refused(signer: TokenSigner, token: str, now: float | None = None) -> str:
    with pytest.raises(TokenError) as info:
        signer.verify(token, now=now)
    return info.value.code


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(KEY)


def test_round_trip(signer: TokenSigner) -> None:
    token = signer.mint("council-2024-05", "Édith Müller", "chair", lifetime=3600, seat="seat-3")
    inv = signer.verify(token)
    assert inv == Invitation(sitting="council-2024-05", seat="seat-3", name="Édith Müller", role="chair",
                             expires=inv.expires)
    assert "=" not in token and "+" not in token and "/" not in token  # URL-fragment safe


def test_seat_is_random_when_not_given(signer: TokenSigner) -> None:
    a = signer.verify(signer.mint("s", "A", "public", 60))
    b = signer.verify(signer.mint("s", "A", "public", 60))
    assert a.seat != b.seat and len(a.seat) == 16


def test_unknown_role_cannot_be_minted(signer: TokenSigner) -> None:
    with pytest.raises(ValueError):
        signer.mint("s", "A", "mayor", 60)  # type: ignore[arg-type]


def test_expiry_uses_now(signer: TokenSigner) -> None:
    token = signer.mint("s", "A", "councillor", lifetime=100)
    expires = signer.verify(token).expires
    assert signer.verify(token, now=expires).expires == expires  # still valid at the last second
    assert refused(signer, token, now=expires + 1) == "expired_token"
    assert refused(signer, signer.mint("s", "A", "councillor", lifetime=-10)) == "expired_token"


def test_token_signed_with_another_key(signer: TokenSigner) -> None:
    token = TokenSigner(OTHER_KEY).mint("s", "A", "chair", 60)
    assert refused(signer, token) == "bad_token"


def test_tampered_payload_is_refused(signer: TokenSigner) -> None:
    token = signer.mint("s", "Alice", "public", 60)
    body, mac = token.split(".")
    payload = json.loads(unb64(body))
    payload["role"] = "chair"  # privilege escalation attempt, MAC kept
    assert refused(signer, b64(json.dumps(payload, separators=(",", ":")).encode()) + "." + mac) == "bad_token"


def test_tampered_mac_is_refused(signer: TokenSigner) -> None:
    token = signer.mint("s", "Alice", "public", 60)
    body, mac = token.split(".")
    raw = bytearray(unb64(mac))
    raw[0] ^= 1
    assert refused(signer, body + "." + b64(bytes(raw))) == "bad_token"
    assert refused(signer, body + "." + mac[:-2]) == "bad_token"  # truncated MAC


@pytest.mark.parametrize("token", ["", "abc", ".", "a.", ".b", "a.b.c", "!!!.@@@", "a b.c d", "\x00.\x00"])
def test_malformed_strings(signer: TokenSigner, token: str) -> None:
    assert refused(signer, token) == "bad_token"


@pytest.mark.parametrize("token", ["é.abc", "abc.é", "jeton.\u2603"])
def test_non_ascii_strings_are_bad_tokens(signer: TokenSigner, token: str) -> None:
    assert refused(signer, token) == "bad_token"  # today: server_error and a logged traceback


def test_extra_dot_after_a_valid_token_is_refused(signer: TokenSigner) -> None:
    token = signer.mint("s", "A", "chair", 60)
    assert refused(signer, token + ".x") == "bad_token"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"sit":"s","seat":"x","name":"n","role":"chair"}',  # no exp
        b'{"sit":"s","seat":"x","name":"n","role":"mayor","exp":9999999999}',  # unknown role
        b'{"sit":"s","seat":"x","name":"n","role":"chair","exp":"soon"}',
        b"\xff\xfe",  # not UTF-8
    ],
)
def test_validly_signed_but_invalid_content(signer: TokenSigner, payload: bytes) -> None:
    body = b64(payload)
    assert refused(signer, f"{body}.{signer._mac(body)}") == "bad_token"


def test_short_key_refused() -> None:
    with pytest.raises(ValueError):
        TokenSigner(b"x" * 31)


def test_key_file_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "signing.key"
    first = TokenSigner.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    token = first.mint("s", "A", "technician", 60)
    second = TokenSigner.from_file(path)  # restart: same key, old invitations still valid
    assert second.verify(token).role == "technician"
    assert path.stat().st_size == 32


def test_key_files_differ_between_installations(tmp_path: Path) -> None:
    a = TokenSigner.from_file(tmp_path / "a.key")
    b = TokenSigner.from_file(tmp_path / "b.key")
    assert refused(b, a.mint("s", "A", "chair", 60)) == "bad_token"
