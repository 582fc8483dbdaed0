"""``hemicycle journal verify|export``, and the offline verifier behind ``verify``.

``verify_export`` needs only the exported file (and, ideally, the server's public key
as published): no database, no server, no network. It reports the first defect found,
in English (``reason``) and French (``reason_fr``). Formats: docs/journal.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .journal import (
    ACTOR_ID,
    ENTRY_FIELDS,
    EVENT_TYPE,
    GENESIS_HASH,
    HEAD_FIELDS,
    HEX64,
    HEX128,
    JOURNAL_FILENAME,
    KEY_FILENAME,
    SITTING_ID,
    TIMESTAMP,
    Journal,
    JournalError,
    JournalKey,
    entry_hash,
    head_message,
    key_fingerprint,
)

Verdict = Literal["valid", "tampered", "unreadable"]


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    entries: int  # entries verified (all of them when ok)
    first_bad_seq: int | None  # None when the defect is not one entry's (head, whole file)
    reason: str
    reason_fr: str = ""
    verdict: Verdict = "valid"
    sitting: str | None = None
    head_hash: str | None = None
    key_fingerprint: str | None = None
    key_checked: bool = False  # False: the key came from the file itself; compare its fingerprint


class _Rejected(Exception):
    def __init__(self, verdict: Verdict, seq: int | None, reason: str, reason_fr: str) -> None:
        super().__init__(reason)
        self.verdict, self.seq, self.reason, self.reason_fr = verdict, seq, reason, reason_fr


def _tampered(seq: int | None, reason: str, reason_fr: str) -> NoReturn:
    raise _Rejected("tampered", seq, reason, reason_fr)


@dataclass
class _Progress:
    entries: int = 0
    sitting: str | None = None


def verify_export(path: Path | str, public_key_hex: str | None = None) -> VerifyReport:
    """Check an export: each line parses; seq runs 1..n for one sitting; each ``prev`` is the
    previous ``hash``; each ``hash`` recomputes; the head names the last seq and hash; the
    head signature verifies with ``public_key_hex`` (else with the key the head names).
    Raises ValueError only for a malformed ``public_key_hex``."""
    expected_key = None
    if public_key_hex is not None:
        expected_key = public_key_hex.strip().lower()
        if not HEX64.fullmatch(expected_key):
            raise ValueError("a journal public key is 64 hexadecimal digits")
    progress = _Progress()
    try:
        return _verify(_read_lines(Path(path)), expected_key, progress)
    except _Rejected as rejected:
        return VerifyReport(
            False, progress.entries, rejected.seq, rejected.reason, rejected.reason_fr, rejected.verdict,
            progress.sitting,
        )


def _read_lines(path: Path) -> list[bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _Rejected("unreadable", None, f"cannot read {path}: {exc.strerror}",
                        f"impossible de lire {path} : {exc.strerror}") from exc
    lines = raw.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if not lines:
        raise _Rejected("unreadable", None, "the file is empty", "le fichier est vide")
    return lines


def _verify(lines: list[bytes], expected_key: str | None, progress: _Progress) -> VerifyReport:
    try:
        first = _parse(lines[0])
    except (ValueError, RecursionError):
        first = None
    if not (isinstance(first, dict) and ("seq" in first or "head" in first)):
        raise _Rejected("unreadable", None, "this is not a Hemicycle journal export (line 1 is no journal entry)",
                        "ce fichier n'est pas un export de journal Hemicycle (la ligne 1 n'est pas une entrée)")
    *entry_lines, head_line = lines
    prev_hash = GENESIS_HASH
    for seq, line in enumerate(entry_lines, start=1):
        entry = _entry_at(line, seq)
        if progress.sitting is None:
            progress.sitting = entry["sitting"]
        elif entry["sitting"] != progress.sitting:
            _tampered(seq, f"entry {seq}: belongs to sitting {entry['sitting']!r}, not {progress.sitting!r}",
                      f"entrée {seq} : appartient à la séance {entry['sitting']!r}, pas à {progress.sitting!r}")
        if entry["seq"] != seq:
            _tampered(seq, f"entry {seq} is missing or out of place (line {seq} holds entry {entry['seq']})",
                      f"entrée {seq} manquante ou déplacée (la ligne {seq} porte l'entrée {entry['seq']})")
        self_consistent = _recomputed_hash(entry) == entry["hash"]
        if entry["prev"] != prev_hash:
            if self_consistent and seq > 1:  # entry seq is intact: its predecessor was changed and re-hashed
                _tampered(seq - 1, f"entry {seq - 1}: altered and re-hashed (entry {seq} no longer links to it)",
                          f"entrée {seq - 1} : modifiée puis re-hachée (l'entrée {seq} ne s'y rattache plus)")
            _tampered(seq, f"entry {seq}: its link to the previous entry is broken (prev edited?)",
                      f"entrée {seq} : son lien avec l'entrée précédente est rompu (prev modifié ?)")
        if not self_consistent:
            _tampered(seq, f"entry {seq}: hash does not match its content (edited?)",
                      f"entrée {seq} : l'empreinte (hash) ne correspond pas à son contenu (modifiée ?)")
        prev_hash = entry["hash"]
        progress.entries = seq
    return _verify_head(_head_of(head_line), prev_hash, expected_key, progress)


def _verify_head(head: dict[str, Any], last_hash: str, expected_key: str | None, progress: _Progress) -> VerifyReport:
    count, head_seq = progress.entries, head["seq"]
    if progress.sitting is not None and head["sitting"] != progress.sitting:
        _tampered(None, f"the signed head is for sitting {head['sitting']!r}, the entries for {progress.sitting!r}",
                  f"la tête signée est celle de la séance {head['sitting']!r}, les entrées de {progress.sitting!r}")
    if head_seq > count:
        _tampered(count + 1, f"entry {count + 1}: missing, the journal was truncated (the signed head names entry "
                  f"{head_seq}, the export ends at entry {count})",
                  f"entrée {count + 1} : manquante, le journal a été tronqué (la tête signée désigne l'entrée "
                  f"{head_seq}, l'export s'arrête à l'entrée {count})")
    if head_seq < count:
        _tampered(head_seq + 1, f"entry {head_seq + 1}: added after the head was signed",
                  f"entrée {head_seq + 1} : ajoutée après la signature de la tête")
    if head["hash"] != last_hash:
        _tampered(None, f"the signed head does not match entry {count}: the journal was re-chained after signing",
                  f"la tête signée ne correspond pas à l'entrée {count} : le journal a été re-chaîné après signature")
    key_hex = expected_key or head["public_key_hex"]
    if not _signature_valid(key_hex, head):
        if expected_key is not None and head["public_key_hex"] != expected_key:
            claimed = key_fingerprint(head["public_key_hex"])
            _tampered(None, f"head signature does not verify with the given public key (the head names key {claimed}):"
                      " it was re-signed with another key",
                      f"la signature de la tête n'est pas valide pour la clé publique donnée (la tête désigne la clé "
                      f"{claimed}) : elle a été re-signée avec une autre clé")
        _tampered(None, "head signature does not verify: the journal was re-chained or truncated after signing",
                  "la signature de la tête n'est pas valide : le journal a été re-chaîné ou tronqué après signature")
    fingerprint = key_fingerprint(key_hex)
    if expected_key is not None:
        reason = f"{count} entries, head {last_hash} signed by the given key {fingerprint}"
        reason_fr = f"{count} entrées, tête {last_hash} signée par la clé donnée {fingerprint}"
    else:
        reason = (f"{count} entries, head {last_hash} signed by key {fingerprint}, read from the file itself: "
                  "NOT checked independently, compare this fingerprint with the one printed in the minutes")
        reason_fr = (f"{count} entrées, tête {last_hash} signée par la clé {fingerprint}, lue dans le fichier même : "
                     "NON vérifiée indépendamment, comparez cette empreinte avec celle du procès-verbal")
    return VerifyReport(True, count, None, reason, reason_fr, "valid", progress.sitting, last_hash, fingerprint,
                        key_checked=expected_key is not None)


def _without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        raise ValueError("duplicate key")  # two values for one field: a reader could be shown either
    return record


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _parse(line: bytes) -> Any:
    return json.loads(line.decode("utf-8"), object_pairs_hook=_without_duplicate_keys, parse_constant=_no_constant)


Check = Callable[[object], bool]


def _is_text(pattern: re.Pattern[str]) -> Check:
    return lambda value: isinstance(value, str) and pattern.fullmatch(value) is not None


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


ENTRY_CHECKS: dict[str, Check] = {
    "sitting": _is_text(SITTING_ID), "seq": _is_seq, "at": _is_text(TIMESTAMP), "actor": _is_text(ACTOR_ID),
    "type": _is_text(EVENT_TYPE), "data": lambda value: isinstance(value, dict),
    "prev": _is_text(HEX64), "hash": _is_text(HEX64),
}
HEAD_CHECKS: dict[str, Check] = {
    "sitting": _is_text(SITTING_ID), "seq": _is_seq, "hash": _is_text(HEX64), "signature_hex": _is_text(HEX128),
    "public_key_hex": _is_text(HEX64), "signed_at": lambda value: isinstance(value, str),
}
assert set(ENTRY_CHECKS) == set(ENTRY_FIELDS) and set(HEAD_CHECKS) == set(HEAD_FIELDS)


def _shape_problem(record: Any, checks: dict[str, Check]) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    if set(record) != set(checks):
        missing, extra = sorted(set(checks) - set(record)), sorted(set(record) - set(checks))
        return f"missing fields {missing}, unexpected fields {extra}"
    wrong = [name for name, check in checks.items() if not check(record[name])]
    return f"wrong type or format for {wrong}" if wrong else None


def _entry_at(line: bytes, seq: int) -> dict[str, Any]:
    try:
        record = _parse(line)
    except (ValueError, RecursionError):
        _tampered(seq, f"entry {seq} (line {seq}): not valid JSON (damaged or edited)",
                  f"entrée {seq} (ligne {seq}) : JSON invalide (endommagée ou modifiée)")
    problem = _shape_problem(record, ENTRY_CHECKS)
    if problem:
        _tampered(seq, f"entry {seq}: malformed ({problem})", f"entrée {seq} : mal formée ({problem})")
    return dict(record)


def _head_of(line: bytes) -> dict[str, Any]:
    try:
        record = _parse(line)
    except (ValueError, RecursionError):
        record = None
    if isinstance(record, dict) and "seq" in record:
        _tampered(None, "the signed head (last line) is missing: the export is incomplete",
                  "la tête signée (dernière ligne) manque : l'export est incomplet")
    head = record.get("head") if isinstance(record, dict) and set(record) == {"head"} else None
    if _shape_problem(head, HEAD_CHECKS) is not None:
        _tampered(None, "the signed head (last line) is malformed", "la tête signée (dernière ligne) est mal formée")
    assert isinstance(head, dict)
    return head


def _recomputed_hash(entry: dict[str, Any]) -> str:
    return entry_hash(entry["prev"], entry["sitting"], entry["seq"], entry["at"], entry["actor"], entry["type"],
                      entry["data"])


def _signature_valid(public_key_hex: str, head: dict[str, Any]) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(
            bytes.fromhex(head["signature_hex"]), head_message(head["sitting"], head["seq"], head["hash"])
        )
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the command line ----------------------------------------------------------------------


def verify_command(file: Path, public_key_hex: str | None = None) -> int:
    """Print the verdict, French first; exit code 0 valid, 1 tampered, 2 unreadable."""
    try:
        report = verify_export(file, public_key_hex)
    except ValueError as exc:
        print(f"Clé publique invalide : 64 chiffres hexadécimaux attendus.\nInvalid public key: {exc}.")
        return 2
    if report.ok:
        print(f"Journal valide : {report.entries} entrées (séance {report.sitting}), "
              f"tête {report.head_hash} signée par la clé {report.key_fingerprint}.")
        print(f"Valid journal: {report.entries} entries (sitting {report.sitting}), "
              f"head {report.head_hash} signed by key {report.key_fingerprint}.")
        if not report.key_checked:
            print(f"Attention : la clé est celle que le fichier désigne, non vérifiée indépendamment ; comparez "
                  f"l'empreinte {report.key_fingerprint} avec celle du procès-verbal, ou passez --public-key.")
            print(f"Warning: the key is the one the file names, not checked independently; compare fingerprint "
                  f"{report.key_fingerprint} with the one in the minutes, or pass --public-key.")
        return 0
    if report.verdict == "tampered":
        print(f"Journal altéré : {report.reason_fr}\nTampered journal: {report.reason}")
        return 1
    print(f"Journal illisible : {report.reason_fr}\nUnreadable journal: {report.reason}")
    return 2


def export_command(
    sitting: str, out: Path, db: Path | None = None, key: Path | None = None, config: str | None = None
) -> int:
    """Export one sitting with a freshly signed head; exit code 0, or 2 when impossible."""
    if db is None or key is None:
        from config import load_settings

        data_dir = load_settings(config).data_dir
        db, key = db or data_dir / JOURNAL_FILENAME, key or data_dir / KEY_FILENAME
    for path, what_fr, what in ((db, "journal", "journal"), (key, "clé du journal", "journal key")):
        if not path.is_file():
            print(f"Export impossible : pas de {what_fr} à {path}.\nExport failed: no {what} at {path}.")
            return 2
    try:
        with Journal(db, JournalKey.load(key)) as journal:
            head = journal.export(sitting, out)
    except (JournalError, OSError, ValueError) as exc:
        print(f"Export impossible / Export failed: {exc}")
        return 2
    fingerprint = key_fingerprint(head.public_key_hex)
    print(f"Journal exporté : {head.seq} entrées de la séance {sitting} dans {out}, "
          f"tête {head.hash} signée par la clé {fingerprint}.")
    print(f"Journal exported: {head.seq} entries of sitting {sitting} to {out}, "
          f"head {head.hash} signed by key {fingerprint}.")
    return 0


def add_journal_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``journal verify`` and ``journal export`` to the ``hemicycle`` command."""
    _add_actions(subparsers.add_parser("journal", help="verify or export a sitting's journal"))


def _add_actions(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="journal_command", required=True)
    verify = actions.add_parser("verify", help="check an exported journal, offline")
    verify.add_argument("file", type=Path, help="the exported journal (JSON Lines)")
    verify.add_argument("--public-key", help="the server's journal public key (64 hex digits), as published; "
                        "without it the key named in the file is used and its fingerprint printed")
    export = actions.add_parser("export", help="export a sitting's journal with a signed head")
    export.add_argument("--sitting", required=True)
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--db", type=Path, help=f"journal database (default: DATA_DIR/{JOURNAL_FILENAME})")
    export.add_argument("--key", type=Path, help=f"journal signing key (default: DATA_DIR/{KEY_FILENAME})")
    export.add_argument("--config", help="TOML settings file, for data_dir")


def run_journal_command(args: argparse.Namespace) -> int:
    if args.journal_command == "verify":
        return verify_command(args.file, args.public_key)
    return export_command(args.sitting, args.out, db=args.db, key=args.key, config=args.config)


def main(argv: list[str] | None = None) -> int:
    """``python -m signaling.journal_cli verify FILE``: the same commands, standalone."""
    parser = argparse.ArgumentParser(prog="hemicycle journal", description="Verify or export a sitting's journal.")
    _add_actions(parser)
    return run_journal_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
