"""signaling/journal.py and journal_cli.py: a durable hash chain per sitting, a signed head,
and an offline verifier that names the first altered entry. Real SQLite files, real keys."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from signaling.journal import GENESIS_HASH, Journal, JournalError, JournalKey, entry_hash, head_message, verify_export
from signaling.journal_cli import add_journal_commands, export_command, run_journal_command, verify_command
from signaling.journal_cli import verify_export as verify_export_cli
from signaling.tokens import TokenSigner

ROOT = Path(__file__).resolve().parent.parent
SITTING = "cm-2026-11-28"
TYPES = ["member_joined", "muted", "floor_given", "proxy_given", "vote_cast", "member_left"]


@pytest.fixture
def key(tmp_path: Path) -> JournalKey:
    return JournalKey.load_or_create(tmp_path / "journal-key.pem")


@pytest.fixture
def journal(tmp_path: Path, key: JournalKey) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3", key) as opened:
        yield opened


def fill(journal: Journal, count: int, sitting: str = SITTING) -> None:
    for i in range(1, count + 1):
        actor = "server" if i % 5 == 0 else f"seat{i % 7:02d}"
        journal.append_sync(sitting, actor, TYPES[i % len(TYPES)], {"i": i, "note": "séance « publique »"})


@pytest.fixture
def exported(tmp_path: Path, journal: Journal) -> Path:
    """A 50-entry sitting, exported."""
    fill(journal, 50)
    journal.export(SITTING, tmp_path / "export.jsonl")
    return tmp_path / "export.jsonl"


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def rehash(record: dict[str, Any]) -> None:
    fields = (record[k] for k in ("prev", "sitting", "seq", "at", "actor", "type", "data"))
    record["hash"] = entry_hash(*fields)


def edit_then_rechain(records: list[dict[str, Any]]) -> None:
    """What a forger does: edit entry 17, then recompute every hash from there on."""
    records[16]["data"]["i"] = 999
    for index in range(16, len(records) - 1):
        if index > 0:
            records[index]["prev"] = records[index - 1]["hash"]
        rehash(records[index])


# --- the chain ------------------------------------------------------------------------------


async def test_first_entry_hashes_as_documented(journal: Journal) -> None:
    at = datetime(2026, 11, 28, 17, 42, 3, 123456, tzinfo=UTC)
    entry = await journal.append(SITTING, "server", "sitting_opened", {"titre": "Séance du conseil municipal", "quorum": 8}, at=at)
    content = '{"actor":"server","at":"2026-11-28T17:42:03.123Z","data":{"quorum":8,"titre":"Séance du conseil municipal"},"seq":1,"sitting":"cm-2026-11-28","type":"sitting_opened"}'
    expected = hashlib.sha256(b"0" * 64 + content.encode("utf-8")).hexdigest()
    assert (entry.seq, entry.at, entry.prev, entry.hash) == (1, "2026-11-28T17:42:03.123Z", GENESIS_HASH, expected)
    assert expected == "06c998376c5a1b355fccc57294f5be91357c0695c05ca649b482a607c855c320"
    assert expected in (ROOT / "docs" / "journal.md").read_text(encoding="utf-8")  # the doc's test vector


async def test_entries_link_each_to_the_previous(journal: Journal) -> None:
    before = time.time()
    returned = [await journal.append(SITTING, f"seat{i}", "member_joined", {"i": i}) for i in range(5)]
    stored = journal.entries(SITTING)
    assert stored == returned
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    assert [e.prev for e in stored] == [GENESIS_HASH] + [e.hash for e in stored[:-1]]
    for e in stored:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e.at)
        assert before - 1 <= e.timestamp <= time.time() + 1
        assert e.hash == entry_hash(e.prev, e.sitting, e.seq, e.at, e.actor, e.type, e.data)


async def test_two_hundred_concurrent_appends_form_gapless_chains_in_call_order(journal: Journal) -> None:
    calls = [("b" if i % 4 == 3 else "a", i) for i in range(200)]
    returned = await asyncio.gather(*(journal.append(s, "server", "vote_cast", {"call": i}) for s, i in calls))
    for sitting in ("a", "b"):
        stored = journal.entries(sitting)
        assert [e.data["call"] for e in stored] == [i for s, i in calls if s == sitting]
        assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
        assert [e.prev for e in stored] == [GENESIS_HASH] + [e.hash for e in stored[:-1]]
        assert [e.at for e in stored] == sorted(e.at for e in stored)
    assert [e.data["call"] for e in returned] == list(range(200))
    assert journal.sittings() == ["a", "b"]


async def test_append_leaves_the_event_loop_free_while_sqlite_waits(tmp_path: Path, journal: Journal) -> None:
    other = sqlite3.connect(tmp_path / "journal.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the file
    pending = asyncio.create_task(journal.append(SITTING, "server", "sitting_opened", {}))
    started = time.monotonic()
    await asyncio.sleep(0.3)
    assert time.monotonic() - started < 5.0  # the loop ran on (blocking it would take the 10 s busy timeout)
    assert not pending.done()
    other.execute("COMMIT")
    other.close()
    assert (await pending).seq == 1


async def test_a_cancelled_caller_still_gets_its_entry_written(tmp_path: Path, key: JournalKey) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, key)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writing = asyncio.create_task(journal.append(SITTING, "seat01", "member_joined", {}))
    queued = asyncio.create_task(journal.append(SITTING, "seat01", "member_left", {}))
    await asyncio.sleep(0.1)  # the first waits for the file, the second waits its turn
    queued.cancel()
    other.execute("COMMIT")
    other.close()
    await writing
    await journal.aclose()  # waits for the queued write
    assert queued.cancelled()
    with Journal(path, key) as reopened:
        assert [e.type for e in reopened.entries(SITTING)] == ["member_joined", "member_left"]


async def test_reopening_the_file_continues_each_chain(tmp_path: Path, key: JournalKey) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path, key) as first:
        fill(first, 3, "a")
        fill(first, 2, "b")
        last_a = first.entries("a")[-1]
    with Journal(path, JournalKey.load(tmp_path / "journal-key.pem")) as second:
        entry = await second.append("a", "server", "sitting_closed", {})
        assert (entry.seq, entry.prev) == (4, last_a.hash)
        assert second.sittings() == ["a", "b"]
        second.export("a", tmp_path / "a.jsonl")
    assert verify_export(tmp_path / "a.jsonl", key.public_key_hex).ok


def test_an_entry_whose_append_returned_survives_kill_9(tmp_path: Path, key: JournalKey) -> None:
    child = """import asyncio, sys
from signaling.journal import Journal, JournalKey
async def run():
    journal = Journal(sys.argv[1], JournalKey.load(sys.argv[2]))
    while True:
        entry = await journal.append("cm", "server", "tick", {})
        print(entry.seq, entry.hash, flush=True)
asyncio.run(run())"""
    db = tmp_path / "journal.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", child, str(db), str(tmp_path / "journal-key.pem")],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(20):
        seq, digest = proc.stdout.readline().split()
    os.kill(proc.pid, signal.SIGKILL)  # right after the 20th append returned, maybe amid the 21st
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    with Journal(db, key) as reopened:
        entries = reopened.entries("cm")
        assert len(entries) >= 20 and entries[19].hash == digest and seq == "20"
        reopened.export("cm", tmp_path / "cm.jsonl")
    assert verify_export(tmp_path / "cm.jsonl", key.public_key_hex).ok


def test_the_database_refuses_updates_and_deletes(tmp_path: Path, journal: Journal) -> None:
    fill(journal, 2)
    other = sqlite3.connect(tmp_path / "journal.sqlite3")
    for statement in ("UPDATE entries SET actor = 'seat99'", "DELETE FROM entries WHERE seq = 2"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            other.execute(statement)
    other.close()
    assert len(journal.entries(SITTING)) == 2


async def test_append_refuses_tokens_and_unrecordable_values(journal: Journal) -> None:
    token = TokenSigner(b"k" * 32).mint(SITTING, "Camille Martin", "councillor", lifetime=60)
    bad_calls: list[tuple[str, str, Any, Any]] = [
        (token, "member_joined", {}, None),
        ("server", "member_joined", {"ratio": float("nan")}, None),
        ("server", "member_joined", {"big": 2**60}, None),
        ("server", "member_joined", {1: "x"}, None),
        ("server", "Vote Cast", {}, None),
        ("server", "member_joined", {}, datetime(2026, 1, 1)),  # naive: which zone?
    ]
    for actor, type, data, at in bad_calls:
        with pytest.raises(ValueError):
            await journal.append(SITTING, actor, type, data, at=at)
    with pytest.raises(ValueError):
        await journal.append("a\nb", "server", "member_joined", {})
    entry = await journal.append(SITTING, "server", "floor_taken", {"duration_s": 12.0, "limit_s": 2.5}, at=1795887723.1234)
    assert entry.data == {"duration_s": 12, "limit_s": 2.5}  # a whole float is recorded as an integer
    assert entry.at == "2026-11-28T17:42:03.123Z"
    assert journal.entries(SITTING) == [entry]


# --- key and signed head --------------------------------------------------------------------


def test_key_file_is_private_and_reloads_to_the_same_key(tmp_path: Path, key: JournalKey) -> None:
    path = tmp_path / "journal-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = JournalKey.load_or_create(path)
    assert again.public_key_hex == key.public_key_hex
    assert key.fingerprint == hashlib.sha256(bytes.fromhex(key.public_key_hex)).hexdigest()[:16]
    assert [p.name for p in tmp_path.iterdir()] == ["journal-key.pem"]  # no temporary file left


def test_head_signature_covers_the_documented_bytes(journal: Journal, key: JournalKey) -> None:
    with pytest.raises(JournalError):
        journal.head(SITTING)
    fill(journal, 3)
    head = journal.head(SITTING)
    last = journal.entries(SITTING)[-1]
    assert (head.sitting, head.seq, head.hash, head.public_key_hex) == (SITTING, 3, last.hash, key.public_key_hex)
    message = b"hemicycle-journal-head\n" + f"{SITTING}\n3\n{last.hash}".encode()
    assert head_message(SITTING, 3, last.hash) == message
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(head.public_key_hex))
    public.verify(bytes.fromhex(head.signature_hex), message)  # raises if not


def test_export_is_json_lines_then_the_head(exported: Path, key: JournalKey) -> None:
    records = read(exported)
    assert len(records) == 51
    assert list(records[0]) == ["sitting", "seq", "at", "actor", "type", "data", "prev", "hash"]
    assert records[-1]["head"]["seq"] == 50 and records[-1]["head"]["hash"] == records[-2]["hash"]
    report = verify_export(exported, key.public_key_hex)
    assert (report.ok, report.entries, report.first_bad_seq, report.verdict) == (True, 50, None, "valid")
    assert report.key_checked and report.key_fingerprint == key.fingerprint and report.sitting == SITTING
    unchecked = verify_export_cli(exported)
    assert unchecked.ok and not unchecked.key_checked and unchecked.key_fingerprint == key.fingerprint
    assert "NOT checked independently" in unchecked.reason


# --- tampering: each names the first bad entry ----------------------------------------------


def tamper(path: Path, change: Any) -> list[dict[str, Any]]:
    records = read(path)
    change(records)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return records


def test_edited_data_is_caught(exported: Path, key: JournalKey) -> None:
    tamper(exported, lambda r: r[16]["data"].update(i=999))
    report = verify_export(exported, key.public_key_hex)
    assert (report.ok, report.first_bad_seq, report.verdict) == (False, 17, "tampered")
    assert report.reason == "entry 17: hash does not match its content (edited?)"
    assert report.entries == 16


def test_edited_actor_is_caught(exported: Path, key: JournalKey) -> None:
    tamper(exported, lambda r: r[16].update(actor="seat99"))
    assert verify_export(exported, key.public_key_hex).first_bad_seq == 17


def test_an_edited_and_rehashed_entry_is_named(exported: Path, key: JournalKey) -> None:
    tamper(exported, lambda r: (r[16].update(type="vote_cast"), rehash(r[16])))
    report = verify_export(exported, key.public_key_hex)
    assert report.first_bad_seq == 17 and "re-hashed" in report.reason


def test_a_deleted_middle_entry_is_caught(exported: Path, key: JournalKey) -> None:
    tamper(exported, lambda r: r.pop(16))
    report = verify_export(exported, key.public_key_hex)
    assert report.first_bad_seq == 17 and "missing or out of place" in report.reason


def test_swapped_entries_are_caught(exported: Path, key: JournalKey) -> None:
    tamper(exported, lambda r: r.__setitem__(slice(16, 18), [r[17], r[16]]))
    assert verify_export(exported, key.public_key_hex).first_bad_seq == 17


def test_a_journal_rechained_after_an_edit_fails_on_its_head(exported: Path, key: JournalKey) -> None:
    tamper(exported, edit_then_rechain)
    report = verify_export(exported, key.public_key_hex)
    assert not report.ok and report.first_bad_seq is None  # the chain is whole; only the head betrays it
    assert "re-chained" in report.reason


def test_a_rechained_journal_with_a_rewritten_head_fails_its_signature(exported: Path, key: JournalKey) -> None:
    tamper(exported, lambda r: (edit_then_rechain(r), r[-1]["head"].update(hash=r[-2]["hash"])))
    for public_key in (key.public_key_hex, None):
        report = verify_export(exported, public_key)
        assert not report.ok and report.verdict == "tampered"
        assert report.reason == "head signature does not verify: the journal was re-chained or truncated after signing"


def test_a_truncated_journal_is_caught(exported: Path, key: JournalKey) -> None:
    tamper(exported, lambda r: r.__delitem__(slice(40, 50)))
    report = verify_export(exported, key.public_key_hex)
    assert (report.ok, report.first_bad_seq, report.entries) == (False, 41, 40)
    assert "truncated" in report.reason


def test_a_truncated_journal_with_a_rewritten_head_fails_its_signature(exported: Path, key: JournalKey) -> None:
    tamper(exported, lambda r: (r.__delitem__(slice(40, 50)), r[-1]["head"].update(seq=40, hash=r[-2]["hash"])))
    assert "re-chained or truncated" in verify_export(exported, key.public_key_hex).reason


def test_a_head_resigned_with_another_key_fails_against_the_real_key(exported: Path, key: JournalKey, tmp_path: Path) -> None:
    forger = JournalKey.load_or_create(tmp_path / "forger.pem")

    def resign(records: list[dict[str, Any]]) -> None:
        head = records[-1]["head"]
        head["signature_hex"] = forger.sign(head_message(head["sitting"], head["seq"], head["hash"]))
        head["public_key_hex"] = forger.public_key_hex
    tamper(exported, resign)
    report = verify_export(exported, key.public_key_hex)
    assert not report.ok and "re-signed with another key" in report.reason and forger.fingerprint in report.reason
    unchecked = verify_export(exported)  # without the real key, only the fingerprint can tell
    assert unchecked.ok and not unchecked.key_checked and unchecked.key_fingerprint == forger.fingerprint != key.fingerprint


def test_a_damaged_line_and_a_duplicated_field_are_caught(exported: Path, key: JournalKey) -> None:
    lines = exported.read_text(encoding="utf-8").splitlines()
    damaged = [*lines[:29], lines[29][:-5], *lines[30:]]
    exported.write_text("\n".join(damaged) + "\n", encoding="utf-8")
    assert verify_export(exported, key.public_key_hex).first_bad_seq == 30
    duplicated = [*lines[:29], lines[29][:-1] + ', "actor": "seat99"}', *lines[30:]]
    exported.write_text("\n".join(duplicated) + "\n", encoding="utf-8")
    assert verify_export(exported, key.public_key_hex).first_bad_seq == 30


def test_garbage_missing_and_empty_files_are_unreadable(tmp_path: Path) -> None:
    (tmp_path / "garbage").write_bytes(os.urandom(4096))
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "other.json").write_text('{"name": "not a journal"}\n')
    for name in ("garbage", "empty", "other.json", "missing"):
        report = verify_export(tmp_path / name)
        assert (report.ok, report.verdict, report.first_bad_seq, report.entries) == (False, "unreadable", None, 0), name


# --- the command line -----------------------------------------------------------------------


def test_verify_command_exit_codes_and_messages(exported: Path, key: JournalKey, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_command(exported, key.public_key_hex) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Journal valide : 50 entrées (séance {SITTING}), tête {read(exported)[-1]['head']['hash']} signée par la clé {key.fingerprint}."
    assert out[1].startswith("Valid journal: 50 entries")
    assert verify_command(exported) == 0
    assert "Attention : la clé est celle que le fichier désigne" in capsys.readouterr().out
    assert verify_command(exported, "not-a-key") == 2
    capsys.readouterr()
    tamper(exported, lambda r: r[16]["data"].update(i=999))
    assert verify_command(exported, key.public_key_hex) == 1
    assert capsys.readouterr().out.startswith("Journal altéré : entrée 17 : l'empreinte (hash) ne correspond pas")
    (tmp_path / "garbage").write_bytes(b"\x00\xff garbage")
    assert verify_command(tmp_path / "garbage") == 2
    assert capsys.readouterr().out.startswith("Journal illisible : ")


def test_export_command_writes_a_journal_that_verifies(exported: Path, key: JournalKey, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    db, key_file, out = tmp_path / "journal.sqlite3", tmp_path / "journal-key.pem", tmp_path / "out.jsonl"
    assert export_command(SITTING, out, db=db, key=key_file) == 0
    assert capsys.readouterr().out.startswith("Journal exporté : 50 entrées")
    assert verify_export(out, key.public_key_hex).ok
    assert export_command("no-such-sitting", tmp_path / "none.jsonl", db=db, key=key_file) == 2
    assert export_command(SITTING, out, db=tmp_path / "missing.sqlite3", key=key_file) == 2
    assert not (tmp_path / "missing.sqlite3").exists()  # never created by an export


def test_journal_commands_plug_into_an_argparse_program(exported: Path, key: JournalKey) -> None:
    parser = argparse.ArgumentParser(prog="hemicycle")
    add_journal_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["journal", "verify", str(exported), "--public-key", key.public_key_hex])
    assert args.command == "journal" and run_journal_command(args) == 0


def test_verify_as_a_separate_process(exported: Path, key: JournalKey, tmp_path: Path) -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "signaling.journal_cli", *argv],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    out = tmp_path / "again.jsonl"
    exported_again = run("export", "--sitting", SITTING, "--out", str(out),
                         "--db", str(tmp_path / "journal.sqlite3"), "--key", str(tmp_path / "journal-key.pem"))
    assert exported_again.returncode == 0, exported_again.stdout
    valid = run("verify", str(out), "--public-key", key.public_key_hex)
    assert valid.returncode == 0 and valid.stdout.startswith("Journal valide : 50 entrées")
    tamper(out, lambda r: r[16].update(actor="seat99"))
    assert run("verify", str(out)).returncode == 1
    (tmp_path / "garbage").write_bytes(b"garbage")
    assert run("verify", str(tmp_path / "garbage")).returncode == 2
