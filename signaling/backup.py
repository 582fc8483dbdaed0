"""``hemicycle backup`` and ``hemicycle restore``: a consistent copy of the data directory.

Runs while the server runs. SQLite databases (the journal) go through SQLite's online
backup API in one step (one read transaction: the database as of one commit, never a
torn copy of a live WAL file); other files are copied as they are; in ``recordings/``
segments still being written (``*.part``, ``*.tmp``) are skipped; dot-files are
temporary. ``manifest.json``: every file (size, sha256, mode) and each sitting's signed
journal head. A restore checks every sha256 and verifies every sitting's chain before
moving anything into the data directory; a non-empty one needs ``--force``, and its
old content is moved aside, never deleted. docs/operations.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .journal import JOURNAL_FILENAME, KEY_FILENAME, Journal, JournalKey, SignedHead, format_timestamp, key_fingerprint
from .journal_cli import verify_export

BACKUP_COMMANDS = ("backup", "restore")
MANIFEST = "manifest.json"
FORMAT = "hemicycle-backup"
VERSION = 1
RECORDINGS = "recordings"
INCOMPLETE_SUFFIXES = (".part", ".tmp")
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
SECRET_NAMES = frozenset({"secret.key", KEY_FILENAME})
TAR_SUFFIXES = {".tar": "w", ".tar.gz": "w:gz", ".tgz": "w:gz"}
CHUNK = 1 << 20


class BackupError(Exception):
    """The backup or the restore cannot be done; nothing was changed in the data directory."""


class DamagedBackup(BackupError):
    """A copy does not verify: a file differs from the manifest, or a journal chain is broken."""


# --- backup ---------------------------------------------------------------------------------


def make_backup(data_dir: Path, out: Path) -> dict[str, Any]:
    """Copy ``data_dir`` to ``out`` (a directory, or an archive ending .tar, .tar.gz, .tgz).
    Returns the manifest."""
    data_dir, out = Path(data_dir).resolve(), Path(out).resolve()
    if not data_dir.is_dir():
        raise BackupError(f"no data directory at {data_dir}")
    if out == data_dir or data_dir in out.parents:
        raise BackupError(f"the backup {out} cannot be inside the data directory {data_dir}")
    archive_mode = _archive_mode(out)
    if out.exists() and (archive_mode or not out.is_dir() or any(out.iterdir())):
        raise BackupError(f"{out} exists: give a new name")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        manifest = _stage(data_dir, staging)
        _write_json(staging / MANIFEST, manifest)
        if archive_mode:
            _write_archive(staging, out, archive_mode, [MANIFEST, *(f["path"] for f in manifest["files"])])
            shutil.rmtree(staging)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _stage(data_dir: Path, staging: Path) -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for source, rel in _walk(data_dir):
        reason = _skip_reason(source, rel)
        if reason:
            skipped.append({"path": rel, "reason": reason})
            continue
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            mode = _mode_for(rel, source.stat().st_mode)
            method = "sqlite-online-backup" if _is_sqlite(source) else "copy"
            (_copy if method == "copy" else _sqlite_backup)(source, target, mode)
        except FileNotFoundError:
            skipped.append({"path": rel, "reason": "vanished while the backup ran"})
            continue
        files.append({"path": rel, "method": method, "mode": f"{mode:04o}"})
    journal = None
    if (staging / JOURNAL_FILENAME).is_file():
        if not (staging / KEY_FILENAME).is_file():
            raise BackupError(f"{data_dir / JOURNAL_FILENAME} exists but its key {KEY_FILENAME} does not")
        heads = verify_journal(staging / JOURNAL_FILENAME, staging / KEY_FILENAME)
        with closing(sqlite3.connect(staging / JOURNAL_FILENAME)) as db:
            db.execute("PRAGMA journal_mode=DELETE")  # the Journal opened it in WAL mode
        key = JournalKey.load(staging / KEY_FILENAME)
        journal = {
            "file": JOURNAL_FILENAME,
            "public_key_hex": key.public_key_hex,
            "fingerprint": key.fingerprint,
            "sittings": {h.sitting: {"seq": h.seq, "hash": h.hash, "signature_hex": h.signature_hex} for h in heads},
        }
    for entry in files:
        entry["size"], entry["sha256"] = _digest(staging / entry["path"])
    created_at = format_timestamp(datetime.now(UTC))
    return {"format": FORMAT, "version": VERSION, "created_at": created_at, "data_dir": str(data_dir),
            "files": files, "skipped": skipped, "journal": journal}


def _walk(root: Path) -> Iterator[tuple[Path, str]]:
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path, path.relative_to(root).as_posix()


def _skip_reason(source: Path, rel: str) -> str | None:
    name = source.name
    if name.startswith("."):
        return "temporary file"
    for side in SQLITE_SIDE_FILES:
        if name.endswith(side) and source.with_name(name[: -len(side)]).is_file():
            return "SQLite side file: its content is in the online backup of the database"
    if rel.startswith(f"{RECORDINGS}/") and name.endswith(INCOMPLETE_SUFFIXES):
        return "recording segment still being written"
    return None


def _mode_for(rel: str, st_mode: int) -> int:
    name = PurePosixPath(rel).name
    if name in SECRET_NAMES or name.endswith((".key", ".pem")):
        return 0o600
    return st_mode & 0o755


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def _sqlite_backup(source: Path, target: Path, mode: int) -> None:
    """The online backup, in one step (``pages=-1``): one read transaction, so the copy is
    the database as of one commit, whatever the server appends meanwhile (WAL readers
    do not block the writer)."""
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()
    if check != "ok":
        raise DamagedBackup(f"the copy of {source} fails SQLite's integrity check: {check}")
    os.chmod(target, mode)


def _copy(source: Path, target: Path, mode: int) -> None:
    with open(source, "rb") as reader, _create(target, mode) as writer:
        shutil.copyfileobj(reader, writer, CHUNK)


@contextmanager
def _create(path: Path, mode: int) -> Iterator[IO[bytes]]:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(descriptor, mode)  # whatever the umask
    with os.fdopen(descriptor, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def _digest(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _write_json(path: Path, value: Any) -> None:
    with _create(path, 0o600) as handle:
        handle.write(json.dumps(value, ensure_ascii=False, indent=2).encode() + b"\n")


def _archive_mode(out: Path) -> str | None:
    name = out.name.lower()
    return next((mode for suffix, mode in TAR_SUFFIXES.items() if name.endswith(suffix)), None)


def _write_archive(staging: Path, out: Path, mode: str, names: list[str]) -> None:
    temporary = out.with_name(f".{out.name}.partial")
    with _create(temporary, 0o600) as handle, tarfile.open(fileobj=handle, mode=mode) as archive:  # type: ignore[call-overload]
        for name in names:
            info = archive.gettarinfo(staging / name, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(staging / name, "rb") as member:
                archive.addfile(info, member)
    os.replace(temporary, out)


# --- verification, shared by backup and restore ---------------------------------------------


def verify_journal(db: Path, key_path: Path) -> list[SignedHead]:
    """Export every sitting of the journal ``db`` and check it with the offline verifier
    (seq gapless, links, hashes, signed head). Returns the heads; raises BackupError."""
    heads = []
    with Journal(db, JournalKey.load(key_path)) as journal, tempfile.TemporaryDirectory() as scratch:
        for sitting in journal.sittings():
            exported = Path(scratch) / "sitting.jsonl"
            head = journal.export(sitting, exported)
            report = verify_export(exported, journal.key.public_key_hex)
            if not report.ok or report.entries != head.seq:
                raise DamagedBackup(f"the journal of sitting {sitting!r} does not verify: {report.reason}")
            heads.append(head)
    return heads


# --- restore --------------------------------------------------------------------------------


def restore_backup(source: Path, data_dir: Path, force: bool = False) -> tuple[dict[str, Any], list[SignedHead]]:
    """Restore ``source`` (a backup directory or archive) into ``data_dir``, verified first.
    Returns the manifest and the journal heads found after the restore."""
    source, data_dir = Path(source).resolve(), Path(data_dir).resolve()
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a directory")
    if data_dir.exists() and any(data_dir.iterdir()) and not force:
        raise BackupError(f"{data_dir} is not empty: restore into an empty directory, or pass --force "
                          "(its content is then moved aside)")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=f".{data_dir.name}.restoring-"))
    try:
        with _open_backup(source) as read:
            with read(MANIFEST) as handle:
                try:
                    manifest = json.loads(handle.read())
                except ValueError:
                    manifest = None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
                raise BackupError(f"{source} is not a Hemicycle backup (version {VERSION})")
            try:
                for entry in manifest["files"]:
                    _restore_file(read, entry, staging)
            except (KeyError, TypeError, ValueError) as exc:
                raise DamagedBackup(f"the manifest of {source} is malformed: {exc!r}") from exc
        heads = _check_journal(manifest, staging)
        _move_into(staging, data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest, heads


@contextmanager
def _open_backup(source: Path) -> Iterator[Any]:
    """A function giving a readable file for a name of the backup."""
    if source.is_dir():
        def read_dir(name: str) -> IO[bytes]:
            path = source / name
            if not path.is_file():
                raise BackupError(f"{name} is missing from the backup {source}")
            return open(path, "rb")

        yield read_dir
    elif source.is_file() and tarfile.is_tarfile(source):
        with tarfile.open(source, "r:*") as archive:
            def read_tar(name: str) -> IO[bytes]:
                try:
                    member = archive.getmember(name)
                except KeyError:
                    raise BackupError(f"{name} is missing from the backup {source}") from None
                handle = archive.extractfile(member) if member.isfile() else None
                if handle is None:
                    raise BackupError(f"{name} is not a regular file in the backup {source}")
                return handle

            yield read_tar
    else:
        raise BackupError(f"no backup at {source} (a directory or a .tar archive made by hemicycle backup)")


def _restore_file(read: Any, entry: dict[str, Any], staging: Path) -> None:
    rel = PurePosixPath(entry["path"])
    if rel.is_absolute() or not rel.parts or any(part in ("", ".", "..") for part in rel.parts):
        raise BackupError(f"unsafe path in the manifest: {entry['path']!r}")
    target = staging.joinpath(*rel.parts)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    digest, size = hashlib.sha256(), 0
    with read(entry["path"]) as reader, _create(target, _mode_for(str(rel), int(entry["mode"], 8))) as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            writer.write(chunk)
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        raise DamagedBackup(f"{entry['path']}: its content does not match the manifest (damaged backup)")


def _check_journal(manifest: dict[str, Any], staging: Path) -> list[SignedHead]:
    recorded = manifest.get("journal")
    if recorded is None:
        return []
    heads = verify_journal(staging / JOURNAL_FILENAME, staging / KEY_FILENAME)
    found = {h.sitting: (h.seq, h.hash) for h in heads}
    expected = {sitting: (h["seq"], h["hash"]) for sitting, h in recorded["sittings"].items()}
    if found != expected:
        raise DamagedBackup(f"the restored journal's heads {found} are not the manifest's {expected}")
    if heads and heads[0].public_key_hex != recorded["public_key_hex"]:
        raise DamagedBackup("the restored journal key is not the one named in the manifest")
    return heads


def _move_into(staging: Path, data_dir: Path) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=f"{data_dir.name}.replaced-{stamp}-"))
        for child in list(data_dir.iterdir()):
            shutil.move(child, aside / child.name)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for child in list(staging.iterdir()):
        shutil.move(child, data_dir / child.name)
    staging.rmdir()


# --- the command line ----------------------------------------------------------------------


def add_backup_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = subparsers.add_parser("backup", help="copy the data directory consistently, even while serving")
    backup.add_argument("--out", type=Path, required=True, help="a new directory, or an archive FILE.tar[.gz]")
    backup.add_argument("--data-dir", type=Path, help="default: data_dir of the settings")
    backup.add_argument("--config", help="TOML settings file, for data_dir")
    restore = subparsers.add_parser("restore", help="restore a backup into a data directory, verified")
    restore.add_argument("--from", dest="source", type=Path, required=True, help="the backup (directory or archive)")
    restore.add_argument("--data-dir", type=Path, help="default: data_dir of the settings")
    restore.add_argument("--config", help="TOML settings file, for data_dir")
    restore.add_argument("--force", action="store_true", help="restore into a non-empty directory (moved aside)")


def run_backup_command(args: argparse.Namespace) -> int:
    """Exit code 0 done, 1 the backup or its journal does not verify, 2 refused."""
    data_dir = args.data_dir
    if data_dir is None or args.config:
        from config import load_settings

        settings = load_settings(args.config)
        data_dir = data_dir or settings.data_dir
        secret = settings.secret_path.resolve()
        if Path(data_dir).resolve() not in secret.parents:
            print(f"Attention : la clé des invitations {secret} est hors du répertoire de données : "
                  f"sauvegardez-la à part.\nWarning: the invitation key {secret} is outside the data directory: "
                  "back it up separately.")
    try:
        if args.command == "backup":
            manifest = make_backup(data_dir, args.out)
            size = sum(f["size"] for f in manifest["files"])
            print(f"Sauvegarde écrite : {args.out} ({len(manifest['files'])} fichiers, {size} octets).")
            print(f"Backup written: {args.out} ({len(manifest['files'])} files, {size} bytes).")
            for item in manifest["skipped"]:
                print(f"  skipped {item['path']}: {item['reason']}")
            journal = manifest["journal"] or {"sittings": {}}
            _print_heads([(s, h["seq"], h["hash"]) for s, h in journal["sittings"].items()])
            return 0
        manifest, heads = restore_backup(args.source, data_dir, force=args.force)
    except BackupError as exc:
        print(f"Échec / Failed: {exc}")
        return 1 if isinstance(exc, DamagedBackup) else 2
    except OSError as exc:
        print(f"Échec / Failed: {exc}")
        return 2
    fingerprint = key_fingerprint(heads[0].public_key_hex) if heads else "-"
    print(f"Restauration terminée dans {data_dir}, journal vérifié (clé {fingerprint}).")
    print(f"Restored into {data_dir}, journal verified (key {fingerprint}).")
    _print_heads([(h.sitting, h.seq, h.hash) for h in heads])
    return 0


def _print_heads(heads: list[tuple[str, int, str]]) -> None:
    for sitting, seq, head_hash in heads:
        print(f"  séance / sitting {sitting} : {seq} entrées / entries, tête / head {head_hash}")
