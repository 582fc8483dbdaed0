"""The sitting journal: an append-only, hash-chained record of every event of a sitting.

One SQLite file (WAL, ``synchronous=FULL``) holds one chain per sitting. Each entry's
``hash`` is ``sha256(prev + canonical JSON of {sitting, seq, at, actor, type, data})``;
the server signs the last hash (the *head*) with its Ed25519 key and the minutes print
it. ``verify_export`` (in journal_cli) checks an export offline. Byte layouts: docs/journal.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import sqlite3
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from .journal_cli import VerifyReport

JOURNAL_FILENAME = "journal.sqlite3"  # in Settings.data_dir
KEY_FILENAME = "journal-key.pem"
GENESIS_HASH = "0" * 64  # the ``prev`` of entry 1
HEAD_PREFIX = b"hemicycle-journal-head\n"
ENTRY_FIELDS = ("sitting", "seq", "at", "actor", "type", "data", "prev", "hash")
HEAD_FIELDS = ("sitting", "seq", "hash", "signature_hex", "public_key_hex", "signed_at")
MAX_SAFE_INTEGER = 2**53 - 1  # integers beyond this do not survive a JavaScript verifier

SITTING_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")  # no control character: "\n" separates the signed head
ACTOR_ID = re.compile(r"[A-Za-z0-9_:@-]{1,64}")  # a seat id or "server"; an invitation token never fits
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    sitting TEXT NOT NULL, seq INTEGER NOT NULL CHECK (seq >= 1), at TEXT NOT NULL, actor TEXT NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (sitting, seq)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS entries_never_updated BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_never_deleted BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
"""


class JournalError(Exception):
    """The journal cannot do what was asked (closed, no such sitting, unusable file)."""


# --- the formats: canonical JSON, entry hash, signed head --------------------------------


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_hash(prev: str, sitting: str, seq: int, at: str, actor: str, type: str, data: Mapping[str, Any]) -> str:
    content = {"sitting": sitting, "seq": seq, "at": at, "actor": actor, "type": type, "data": data}
    return hashlib.sha256(prev.encode("ascii") + canonical_json(content)).hexdigest()


def head_message(sitting: str, seq: int, head_hash: str) -> bytes:
    """The exact bytes the server signs for a head."""
    return HEAD_PREFIX + f"{sitting}\n{seq}\n{head_hash}".encode()


def format_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("journal timestamps must be timezone-aware")
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def key_fingerprint(public_key_hex: str) -> str:
    """First 16 hex digits of sha256(raw 32-byte public key): what the minutes print."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


def journal_data(value: Any, where: str = "data") -> Any:
    """``value`` as the journal records it, so that any language recomputes the same hash:
    string keys (none beyond U+FFFF), integers within ±(2**53 - 1), whole floats as integers,
    other floats only within 1e-4 <= |x| < 1e15 (written alike by Python and ECMAScript)."""
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) and all(ord(char) <= 0xFFFF for char in key) for key in value):
            raise ValueError(f"{where}: keys must be strings of characters up to U+FFFF")
        return {key: journal_data(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [journal_data(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"{where}: integer {value} is beyond ±(2**53 - 1)")
        return value
    if isinstance(value, float) and 1e-4 <= abs(value) < 1e15:
        return value
    raise ValueError(f"{where}: {value!r} cannot be recorded (JSON values only; floats within 1e-4..1e15)")


def verify_export(path: Path | str, public_key_hex: str | None = None) -> VerifyReport:
    """Check an exported journal offline; see ``signaling.journal_cli.verify_export``."""
    from .journal_cli import verify_export as verify

    return verify(path, public_key_hex)


@dataclass(frozen=True)
class Entry:
    sitting: str
    seq: int
    at: str
    actor: str
    type: str
    data: dict[str, Any]
    prev: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def timestamp(self) -> float:
        """``at`` as POSIX seconds (to the millisecond)."""
        return datetime.strptime(self.at, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


@dataclass(frozen=True)
class SignedHead:
    sitting: str
    seq: int
    hash: str
    signature_hex: str
    public_key_hex: str
    signed_at: str  # informative: not covered by the signature

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JournalKey:
    """The server's Ed25519 journal key, kept as an unencrypted PKCS#8 PEM file (mode 0600)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key_hex = raw.hex()
        self.fingerprint = key_fingerprint(self.public_key_hex)

    @classmethod
    def load(cls, path: Path) -> JournalKey:
        private_key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise JournalError(f"{path} does not hold an Ed25519 private key")
        return cls(private_key)

    @classmethod
    def load_or_create(cls, path: Path) -> JournalKey:
        """Load the key, creating it on first use: written to a temporary file, then linked
        into place, so that a crash never leaves half a key and two processes never race."""
        path = Path(path)
        if path.exists():
            return cls.load(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, pem)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            os.unlink(temporary)
        return cls.load(path)

    def sign(self, message: bytes) -> str:
        return self._private_key.sign(message).hex()


# --- the store -----------------------------------------------------------------------------


class Journal:
    """Appends go through one dedicated writer thread, in call order; each is committed
    (and fsynced by SQLite) before ``append`` returns. Reads are synchronous and short."""

    def __init__(self, path: Path | str, key: JournalKey) -> None:
        self.path = Path(path)
        self.key = key
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hemicycle-journal")
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise JournalError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); use a local filesystem")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except BaseException:
            self._db.close()
            raise

    async def append(
        self, sitting: str, actor: str, type: str, data: Mapping[str, Any], at: datetime | float | None = None
    ) -> Entry:
        """Record one event; returns once it is durably committed. Calls are written in the
        order they were made; cancelling the caller does not cancel the write. ``at``: an
        aware datetime or POSIX seconds, recorded to the millisecond; default: now."""
        job = self._submit(sitting, actor, type, data, at)
        return await asyncio.shield(asyncio.wrap_future(job))

    def append_sync(
        self, sitting: str, actor: str, type: str, data: Mapping[str, Any], at: datetime | float | None = None
    ) -> Entry:
        """``append`` for code outside the event loop (blocks until committed)."""
        return self._submit(sitting, actor, type, data, at).result()

    def entries(self, sitting: str) -> list[Entry]:
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT sitting, seq, at, actor, type, data, prev, hash FROM entries WHERE sitting = ? ORDER BY seq",
                (sitting,),
            ).fetchall()
        return [Entry(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], row[7]) for row in rows]

    def sittings(self) -> list[str]:
        """Sittings that have entries, in the order of their first entry."""
        with self._lock:
            self._check_open()
            rows = self._db.execute("SELECT sitting FROM entries WHERE seq = 1 ORDER BY at, sitting").fetchall()
        return [row[0] for row in rows]

    def head(self, sitting: str) -> SignedHead:
        """Sign the current last entry of ``sitting``: what the minutes print."""
        with self._lock:
            self._check_open()
            row = self._db.execute(
                "SELECT seq, hash FROM entries WHERE sitting = ? ORDER BY seq DESC LIMIT 1", (sitting,)
            ).fetchone()
        if row is None:
            raise JournalError(f"the journal has no entry for sitting {sitting!r}")
        return self._sign(sitting, row[0], row[1])

    def export(self, sitting: str, path: Path | str) -> SignedHead:
        """Write ``sitting`` as JSON Lines, one entry a line, then ``{"head": {...}}``. The
        head signs the last exported entry, whatever is appended meanwhile."""
        entries = self.entries(sitting)
        if not entries:
            raise JournalError(f"the journal has no entry for sitting {sitting!r}")
        head = self._sign(sitting, entries[-1].seq, entries[-1].hash)
        lines = [json.dumps(entry.to_dict(), ensure_ascii=False) for entry in entries]
        lines.append(json.dumps({"head": head.to_dict()}, ensure_ascii=False))
        target = Path(path)
        temporary = target.with_name(f".{target.name}.tmp")
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        return head

    def close(self) -> None:
        """Finish the pending appends, then close the file. Idempotent."""
        self._writer.shutdown(wait=True)
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError("the journal is closed")

    def _sign(self, sitting: str, seq: int, head_hash: str) -> SignedHead:
        signature = self.key.sign(head_message(sitting, seq, head_hash))
        signed_at = format_timestamp(datetime.now(UTC))
        return SignedHead(sitting, seq, head_hash, signature, self.key.public_key_hex, signed_at)

    def _submit(
        self, sitting: str, actor: str, type: str, data: Mapping[str, Any], at: datetime | float | None
    ) -> Future[Entry]:
        if not isinstance(sitting, str) or not SITTING_ID.fullmatch(sitting):
            raise ValueError(f"invalid sitting id {sitting!r}: 1 to 128 characters, no control character")
        if not isinstance(actor, str) or not ACTOR_ID.fullmatch(actor):
            raise ValueError("invalid actor: a seat id or 'server' (1 to 64 of A-Z a-z 0-9 _ : @ -), never a token")
        if not isinstance(type, str) or not EVENT_TYPE.fullmatch(type):
            raise ValueError(f"invalid event type {type!r}: lower case, digits, '_' and '.'")
        if not isinstance(data, Mapping):
            raise ValueError("journal data must be a JSON object")
        data_text = canonical_json(journal_data(data)).decode()  # also rejects text that is not valid Unicode
        if isinstance(at, int | float):
            at = datetime.fromtimestamp(at, UTC)
        timestamp = None if at is None else format_timestamp(at)
        try:
            return self._writer.submit(self._write, sitting, actor, type, data_text, timestamp)
        except RuntimeError as exc:  # the writer was shut down by close()
            raise JournalError("the journal is closed") from exc

    def _write(self, sitting: str, actor: str, type: str, data_text: str, timestamp: str | None) -> Entry:
        with self._lock:
            self._check_open()
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # also orders writers from another process on the same file
            try:
                row = db.execute(
                    "SELECT seq, hash FROM entries WHERE sitting = ? ORDER BY seq DESC LIMIT 1", (sitting,)
                ).fetchone()
                seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS_HASH)
                at = timestamp or format_timestamp(datetime.now(UTC))
                data = json.loads(data_text)
                digest = entry_hash(prev, sitting, seq, at, actor, type, data)
                db.execute(
                    "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (sitting, seq, at, actor, type, data_text, prev, digest),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return Entry(sitting, seq, at, actor, type, data, prev, digest)
