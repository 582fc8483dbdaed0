"""hemicycle backup / restore: a live server keeps appending to its journal while the backup
runs; the copy is a consistent prefix, restores, verifies, and a new server replays it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from config import Settings
from signaling.app import HUB
from signaling.cli import main as hemicycle
from signaling.journal import Entry, Journal
from tests.commands import command
from tests.peers import Peer
from tests.servers import start_app

ROOT = Path(__file__).resolve().parent.parent
LOAD = "load-test"  # a sitting of the journal the servers do not hold: only appended to


async def keep_appending(journal: Journal, stop: asyncio.Event, appended: list[Entry]) -> None:
    while not stop.is_set():
        appended.append(await journal.append(LOAD, "server", "load_tick", {"i": len(appended) + 1}))
        await asyncio.sleep(0.003)


def rows(db: Path, sitting: str) -> list[tuple[int, str]]:
    """Read a backup's journal without touching the file (no WAL files, no header change)."""
    connection = sqlite3.connect(f"{db.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return connection.execute("SELECT seq, hash FROM entries WHERE sitting = ? ORDER BY seq", (sitting,)).fetchall()
    finally:
        connection.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def test_backup_while_serving_then_restore_and_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    recordings = data / "recordings"
    recordings.mkdir(parents=True)
    (recordings / "seg-0001.webm").write_bytes(b"closed segment " * 1000)
    (recordings / "seg-0002.webm.part").write_bytes(b"being written")
    settings = Settings(port=0, data_dir=data, demo=False)
    runner, base = await start_app(settings)
    hub = runner.app[HUB]
    names = ["Maire", "Adjointe", "Conseiller", "Conseillère"]
    tokens = [hub.signer.mint("demo", n, "chair" if i == 0 else "councillor", 3600) for i, n in enumerate(names)]
    peers = [Peer(base, t) for t in tokens]
    stop, appended = asyncio.Event(), []
    try:
        for peer in peers:
            await peer.join()
        chair, a, b, c = peers
        state = hub.sittings["demo"].state
        await command(c, {"type": "give_proxy", "holder_id": b.me}, lambda: state.proxies == {c.me: b.me})
        await command(
            chair, {"type": "open_vote", "question": "Adopter le budget ?"}, lambda: state.open_vote is not None
        )
        ballots = lambda: state.open_vote.ballots if state.open_vote else {}  # noqa: E731
        await command(a, {"type": "cast_vote", "choice": "for"}, lambda: a.me in ballots())
        await command(b, {"type": "cast_vote", "choice": "against"}, lambda: b.me in ballots())
        journal = hub.sittings["demo"].journal
        demo_entries = journal.entries("demo")
        appender = asyncio.get_running_loop().create_task(keep_appending(journal, stop, appended))
        await asyncio.sleep(0.2)
        started_at = len(appended)
        # the command an operator runs, in its own process, while the server appends every few ms
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "signaling.cli",
            "backup",
            "--data-dir",
            str(data),
            "--out",
            str(tmp_path / "backup"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        finished_at = len(appended)
        # and an archive, from a thread of this process, appends still going on
        archive = tmp_path / "backup.tar.gz"
        assert await asyncio.to_thread(hemicycle, ["backup", "--data-dir", str(data), "--out", str(archive)]) == 0
        await asyncio.sleep(0.1)
        stop.set()
        await appender
    finally:
        stop.set()
        for peer in peers:
            await peer.close()
        await runner.cleanup()
    assert process.returncode == 0, output.decode()
    assert finished_at > started_at  # the server kept appending while the backup ran

    backup = tmp_path / "backup"
    manifest = json.loads((backup / "manifest.json").read_text())
    files = {f["path"]: f for f in manifest["files"]}
    assert files["journal.sqlite3"]["method"] == "sqlite-online-backup"
    assert {"secret.key", "journal-key.pem", "recordings/seg-0001.webm"} <= set(files)
    assert not [p for p in files if p.endswith(("-wal", "-shm"))]
    assert {"path": "recordings/seg-0002.webm.part", "reason": "recording segment still being written"} in manifest[
        "skipped"
    ]
    assert mode(backup / "secret.key") == mode(backup / "journal-key.pem") == 0o600
    assert files["secret.key"]["mode"] == files["journal-key.pem"]["mode"] == "0600"
    assert mode(backup) == 0o700 and mode(archive) == 0o600

    # a consistent prefix: gapless, the very entries the server wrote, the manifest's head
    copied = rows(backup / "journal.sqlite3", LOAD)
    count = len(copied)
    assert started_at < count <= finished_at < len(appended)  # taken amid the appends
    assert copied == [(e.seq, e.hash) for e in appended[:count]]
    assert manifest["journal"]["sittings"][LOAD]["seq"] == count
    assert manifest["journal"]["sittings"][LOAD]["hash"] == appended[count - 1].hash
    assert rows(backup / "journal.sqlite3", "demo") == [(e.seq, e.hash) for e in demo_entries]
    assert manifest["journal"]["sittings"]["demo"]["seq"] == len(demo_entries)

    # restore into a new directory: verified, heads printed
    capsys.readouterr()
    restored = tmp_path / "restored"
    assert hemicycle(["restore", "--from", str(backup), "--data-dir", str(restored)]) == 0
    printed = capsys.readouterr().out
    assert f"sitting {LOAD} : {count} entrées / entries, tête / head {appended[count - 1].hash}" in printed
    assert f"tête / head {demo_entries[-1].hash}" in printed
    assert mode(restored / "secret.key") == mode(restored / "journal-key.pem") == 0o600
    assert (restored / "recordings" / "seg-0001.webm").read_bytes() == b"closed segment " * 1000
    assert not (restored / "recordings" / "seg-0002.webm.part").exists()
    assert not list(tmp_path.glob(".restored.restoring-*"))

    # a new server on the restored directory replays the sitting; old invitations still work
    runner, base = await start_app(Settings(port=0, data_dir=restored, demo=False))
    try:
        hub = runner.app[HUB]
        state = hub.sittings["demo"].state
        assert state.proxies == {c.me: b.me}
        vote = state.open_vote
        assert vote is not None and {m: x.choice for m, x in vote.ballots.items()} == {a.me: "for", b.me: "against"}
        assert hub.signer.verify(tokens[1]).name == "Adjointe"
        replayed = hub.sittings["demo"].journal.entries("demo")
        assert [(e.seq, e.hash) for e in replayed[: len(demo_entries)]] == [(e.seq, e.hash) for e in demo_entries]
        assert [e.hash for e in hub.sittings["demo"].journal.entries(LOAD)] == [e.hash for e in appended[:count]]
    finally:
        await runner.cleanup()

    # a non-empty data directory is refused without --force, and left as it was
    before = listing(restored)
    assert hemicycle(["restore", "--from", str(archive), "--data-dir", str(restored)]) == 2
    assert "not empty" in capsys.readouterr().out
    assert listing(restored) == before
    # with --force: the archive is restored, the old content moved aside, not deleted
    assert hemicycle(["restore", "--from", str(archive), "--data-dir", str(restored), "--force"]) == 0
    aside = list(tmp_path.glob("restored.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "journal.sqlite3").is_file()
    archived_count = rows(restored / "journal.sqlite3", LOAD)[-1][0]
    assert count <= archived_count <= len(appended)  # the archive was taken after the directory


def test_a_damaged_backup_is_refused_and_nothing_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    (data / "recordings").mkdir(parents=True)
    (data / "recordings" / "seg-0001.webm").write_bytes(b"x" * 4096)
    from signaling.journal import JournalKey

    with Journal(data / "journal.sqlite3", JournalKey.load_or_create(data / "journal-key.pem")) as journal:
        for i in range(20):
            journal.append_sync("cm-1", "server", "note", {"i": i})
        assert hemicycle(["backup", "--data-dir", str(data), "--out", str(tmp_path / "good")]) == 0  # journal open
    assert hemicycle(["backup", "--data-dir", str(data), "--out", str(tmp_path / "good")]) == 2  # never overwritten
    assert hemicycle(["backup", "--data-dir", str(data), "--out", str(data / "inside")]) == 2
    shutil.copytree(tmp_path / "good", tmp_path / "bad")
    segment = tmp_path / "bad" / "recordings" / "seg-0001.webm"
    os.chmod(segment, 0o644)
    segment.write_bytes(b"y" * 4096)
    capsys.readouterr()
    assert hemicycle(["restore", "--from", str(tmp_path / "bad"), "--data-dir", str(tmp_path / "new")]) == 1
    assert "does not match the manifest" in capsys.readouterr().out
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new.*"))
    assert hemicycle(["restore", "--from", str(tmp_path / "good"), "--data-dir", str(tmp_path / "new")]) == 0
    assert "cm-1 : 20 entrées" in capsys.readouterr().out
