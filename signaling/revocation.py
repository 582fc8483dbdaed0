"""Revoked invitations: a small JSON list in the data directory, and its enforcement.

``hemicycle revoke --seat SEAT [--sitting ID]`` refuses every invitation naming that
seat (in that sitting, or in all); ``hemicycle revoke --token TOKEN`` refuses that
one link only, so that a leaked link can be replaced by a new one for the same seat.
The file is written atomically (temporary file, fsync, rename) under a lock. The
server checks it at every ``hello`` and re-reads it when it changes (polled every
2 s), dropping whoever is connected with a revoked invitation. Tokens themselves are
never stored: only their SHA-256.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import load_settings

from .tokens import TokenError, TokenSigner

if TYPE_CHECKING:
    from .hub import Hub
    from .session import Session

log = logging.getLogger(__name__)

FILENAME = "revoked.json"
POLL_INTERVAL = 2.0
REVOKED_MESSAGE = "invitation revoked"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class Revocation:
    seat: str
    sitting: str | None = None  # None: every sitting
    token_sha256: str | None = None  # set: only this invitation, not the seat's later ones
    at: str = ""

    def refuses(self, sitting: str, seat: str, digest: str | None) -> bool:
        if self.sitting is not None and self.sitting != sitting:
            return False
        if self.token_sha256 is not None:
            return digest == self.token_sha256
        return self.seat == seat


class RevocationList:
    """The list in ``path``, re-read whenever the file changes (inode, size or mtime)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[Revocation] = []
        self._stamp: tuple[int, int, int] | None = None

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when it did."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            changed = self._stamp is not None
            self._stamp, self.entries = None, []
            return changed
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return False
        try:
            self.entries = _read(self.path)
        except (OSError, ValueError, TypeError) as exc:  # keep the last good list
            log.error("revocation list %s unreadable, keeping the previous one: %s", self.path, exc)
            return False
        self._stamp = stamp
        return True

    def refuses(self, sitting: str, seat: str, digest: str | None) -> bool:
        return any(entry.refuses(sitting, seat, digest) for entry in self.entries)


def _read(path: Path) -> list[Revocation]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [Revocation(**entry) for entry in data.get("revoked", [])]


def _write(path: Path, entries: list[Revocation]) -> None:
    body = json.dumps({"version": 1, "revoked": [asdict(e) for e in entries]}, indent=1, ensure_ascii=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(body + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[list[Revocation]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _read(path) if path.exists() else []
        yield entries
        _write(path, entries)


def revoke(data_dir: Path, entry: Revocation) -> bool:
    """Add ``entry`` to the list in ``data_dir``; False if it was already there."""
    with _locked(data_dir / FILENAME) as entries:
        if any(_same(e, entry) for e in entries):
            return False
        entries.append(entry)
        return True


def restore(data_dir: Path, entry: Revocation) -> bool:
    """Remove matching entries; False if there was none."""
    with _locked(data_dir / FILENAME) as entries:
        kept = [e for e in entries if not _same(e, entry)]
        removed = len(kept) != len(entries)
        entries[:] = kept
        return removed


def _same(a: Revocation, b: Revocation) -> bool:
    return (a.seat, a.sitting, a.token_sha256) == (b.seat, b.sitting, b.token_sha256)


# ---------------------------------------------------------------- in the server

_lists: dict[Path, RevocationList] = {}
_digests: weakref.WeakKeyDictionary[Session, str] = weakref.WeakKeyDictionary()


def revocations(data_dir: Path) -> RevocationList:
    path = (data_dir / FILENAME).absolute()
    if path not in _lists:
        _lists[path] = RevocationList(path)
    return _lists[path]


def refuses_hello(session: Session, sitting: str, seat: str, token: str) -> bool:
    """Is this invitation revoked? Remembers the token's digest for later checks."""
    digest = token_digest(token)
    _digests[session] = digest
    listing = revocations(session.hub.settings.data_dir)
    listing.refresh()
    return listing.refuses(sitting, seat, digest)


def drop_revoked(hub: Hub) -> int:
    """Disconnect every connection whose invitation is now revoked; how many."""
    listing = revocations(hub.settings.data_dir)
    dropped = 0
    for sitting in hub.sittings.values():
        for seat in list(sitting.seats.values()):
            session = seat.session
            if session is not None and listing.refuses(sitting.id, seat.id, _digests.get(session)):
                log.info("seat %s of sitting %s: invitation revoked, disconnecting", seat.id, sitting.id)
                session.error("bad_token", REVOKED_MESSAGE, fatal=True)
                dropped += 1
    return dropped


async def watch(hub: Hub, interval: float = POLL_INTERVAL) -> AsyncIterator[None]:
    """aiohttp cleanup context: poll the list and enforce it while the server runs."""
    listing = revocations(hub.settings.data_dir)
    listing.refresh()

    async def poll() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                if listing.refresh():
                    drop_revoked(hub)
            except Exception:
                log.exception("enforcing the revocation list failed")

    task = asyncio.get_running_loop().create_task(poll())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------- the command


def add_revoke_command(commands: Any) -> None:
    revoke_cmd = commands.add_parser("revoke", help="revoke an invitation (a seat, or one link)")
    revoke_cmd.add_argument("--config")
    which = revoke_cmd.add_mutually_exclusive_group(required=True)
    which.add_argument("--seat", help="every invitation for this seat (member id)")
    which.add_argument("--token", help="this invitation only (the text after #token= in the link)")
    which.add_argument("--list", action="store_true", help="print the revocation list")
    revoke_cmd.add_argument("--sitting", help="only in this sitting (default: every sitting)")
    revoke_cmd.add_argument("--undo", action="store_true", help="lift the revocation instead")


def run_revoke_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    data_dir = settings.data_dir
    if args.list:
        for e in _read(data_dir / FILENAME) if (data_dir / FILENAME).exists() else []:
            what = "one invitation of seat" if e.token_sha256 else "seat"
            print(f"{e.at}  {what} {e.seat}  sitting {e.sitting or '(all)'}")
        return 0
    at = datetime.now(UTC).isoformat(timespec="seconds")
    if args.token:
        if not settings.secret_path.exists():
            print(f"hemicycle revoke: no signing key at {settings.secret_path}", flush=True)
            return 2
        try:
            invitation = TokenSigner.from_file(settings.secret_path).verify(args.token.strip(), now=0)
        except TokenError as exc:
            print(f"hemicycle revoke: not an invitation of this server: {exc}", flush=True)
            return 2
        entry = Revocation(invitation.seat, invitation.sitting, token_digest(args.token.strip()), at)
    else:
        entry = Revocation(args.seat, args.sitting, None, at)
    where = f"sitting {entry.sitting}" if entry.sitting else "every sitting"
    what = f"the invitation of seat {entry.seat}" if entry.token_sha256 else f"seat {entry.seat}"
    if args.undo:
        done = restore(data_dir, entry)
        print(f"{what} ({where}): " + ("revocation lifted" if done else "was not revoked"), flush=True)
    else:
        done = revoke(data_dir, entry)
        print(f"{what} ({where}): " + ("revoked" if done else "already revoked"), flush=True)
    return 0
