"""``hemicycle minutes``, ``hemicycle roster import`` and ``hemicycle convoke``: the clerk's commands.

Each prints what it did in French and returns an exit code: 0 done, 1 refused (bad CSV,
a message the mail server refused), 2 impossible (no such sitting, file, journal...).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from config import Settings, load_settings
from config.settings import SittingSettings

from .journal import JOURNAL_FILENAME, KEY_FILENAME, Journal, JournalError, JournalKey
from .minutes import MinutesError, build_minutes
from .roster import RosterError, members_toml, read_csv, write_settings

ADMIN_COMMANDS = ("minutes", "roster", "convoke")


def add_admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    minutes = commands.add_parser("minutes", help="write the minutes draft (procès-verbal) of a sitting")
    minutes.add_argument("--sitting", required=True)
    minutes.add_argument("--out", type=Path, required=True, help="FILE.md (Markdown) or FILE.html (printable)")
    minutes.add_argument("--db", type=Path, help=f"journal database (default: DATA_DIR/{JOURNAL_FILENAME})")
    minutes.add_argument("--key", type=Path, help=f"journal signing key (default: DATA_DIR/{KEY_FILENAME})")
    minutes.add_argument("--config", help="TOML settings file (the sitting, data_dir, timezone)")
    minutes.add_argument("--secretary", action="append", help="name of a secretary of the sitting (repeatable); "
                         "default: the members other than the chair who recorded presence or votes")
    roster = commands.add_parser("roster", help="import the council's members")
    actions = roster.add_subparsers(dest="roster_command", required=True)
    load = actions.add_parser("import", help="members from a CSV file (nom;groupe;email[;id])")
    load.add_argument("file", type=Path)
    load.add_argument("--sitting", required=True)
    load.add_argument("--config", type=Path, help="settings file to update (without: print the TOML)")
    load.add_argument("--title", help="title of the sitting, if it is not in the settings file yet")
    convoke = commands.add_parser("convoke", help="email the convocation, with personal links, to every member")
    convoke.add_argument("--sitting", required=True)
    convoke.add_argument("--config", help="TOML settings file (default: $HEMICYCLE_CONFIG)")
    convoke.add_argument("--dry-run", type=Path, metavar="DIR",
                         help="write one .eml file per member in DIR, send nothing (they hold valid links)")


def run_admin_command(args: argparse.Namespace) -> int:
    try:
        if args.command == "minutes":
            return minutes_command(args.sitting, args.out, args.db, args.key, args.config, args.secretary)
        if args.command == "roster":
            return roster_command(args.file, args.sitting, args.config, args.title)
        return convoke_command(args.sitting, args.config, args.dry_run)
    except (OSError, ValueError) as exc:  # settings that do not load, an unreadable file...
        print(f"Impossible : {exc}", file=sys.stderr)
        return 2


def _sitting(settings: Settings, sitting: str) -> SittingSettings | None:
    spec = next((s for s in settings.sittings if s.id == sitting), None)
    if spec is None:
        known = ", ".join(s.id for s in settings.sittings) or "aucune"
        print(f"Pas de séance « {sitting} » dans les réglages (séances : {known}).", file=sys.stderr)
    return spec


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def minutes_command(sitting: str, out: Path, db: Path | None = None, key: Path | None = None,
                    config: str | None = None, secretaries: list[str] | None = None) -> int:
    settings = load_settings(config)
    spec = _sitting(settings, sitting)
    if spec is None:
        return 2
    if out.suffix.lower() not in (".md", ".html", ".htm"):
        print(f"{out} : extension .md (Markdown) ou .html attendue (PDF : imprimez le HTML).", file=sys.stderr)
        return 2
    db, key = db or settings.data_dir / JOURNAL_FILENAME, key or settings.data_dir / KEY_FILENAME
    for path, what in ((db, "journal"), (key, "clé du journal")):
        if not path.is_file():
            print(f"Pas de {what} à {path}.", file=sys.stderr)
            return 2
    try:
        journal_key = JournalKey.load(key)
        with Journal(db, journal_key) as journal:
            entries, head = journal.entries(sitting), journal.head(sitting)
        minutes = build_minutes(spec, entries, head, journal_key.fingerprint, secretaries=secretaries,
                                timezone=settings.timezone)
    except (JournalError, MinutesError) as exc:
        print(f"Procès-verbal impossible : {exc}", file=sys.stderr)
        return 2
    _write(out, minutes.to_markdown() if out.suffix.lower() == ".md" else minutes.to_html())
    print(f"Projet de procès-verbal écrit dans {out} : journal de {head.seq} entrées, "
          f"tête {head.hash} signée par la clé {journal_key.fingerprint}.")
    return 0


def roster_command(file: Path, sitting: str, config: Path | None, title: str | None = None) -> int:
    try:
        roster = read_csv(file)
    except RosterError as exc:
        print(f"{file} : {len(exc.problems)} erreur(s), rien n'est importé :", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    members = roster.members
    if config is None:
        print(members_toml(members), end="")
    else:
        write_settings(config, sitting, members, title)
        print(f"{len(members)} membre(s) importé(s) dans {config} (séance {sitting}).")
    paper = [m.name for m in members if not m.email]
    if paper:
        print(f"Sans adresse électronique (convocation papier) : {', '.join(paper)}.", file=sys.stderr)
    if roster.ignored_columns:
        print(f"Colonnes ignorées : {', '.join(roster.ignored_columns)}.", file=sys.stderr)
    return 0


def convoke_command(sitting: str, config: str | None, dry_run: Path | None) -> int:
    from .convocation import ConvocationError, build_convocations, jours_francs, send_convocations, sitting_start
    from .tokens import TokenSigner

    settings = load_settings(config)
    spec = _sitting(settings, sitting)
    if spec is None:
        return 2
    if settings.smtp is None and dry_run is None:
        print("Pas de serveur de messagerie : ajoutez une table [smtp] (host, port, sender...) aux réglages, "
              "ou essayez avec --dry-run DIR.", file=sys.stderr)
        return 2
    sender = settings.smtp.sender if settings.smtp else "Hemicycle <convocation@hemicycle.invalid>"
    config_file = config or os.environ.get("HEMICYCLE_CONFIG")
    base_dir = Path(config_file).resolve().parent if config_file else Path.cwd()
    try:
        start = sitting_start(spec, settings.timezone)
        convocations, paper = build_convocations(settings, spec, TokenSigner.from_file(settings.secret_path),
                                                 sender=sender, base_dir=base_dir)
    except ConvocationError as exc:
        print(f"Convocation impossible : {exc}", file=sys.stderr)
        return 2
    days = jours_francs(datetime.fromtimestamp(time.time(), start.tzinfo).date(), start.date())
    print(f"Séance du {start:%d/%m/%Y %H:%M} : {days} jour(s) franc(s) d'ici là "
          "(requis : 3 dans les communes de moins de 3 500 habitants, 5 au-delà, 1 en cas d'urgence).")
    if paper:
        print(f"À convoquer sur papier (pas d'adresse) : {', '.join(m.name for m in paper)}.")
    if dry_run is not None:
        dry_run.mkdir(parents=True, exist_ok=True)
        for convocation in convocations:
            (dry_run / f"{convocation.member}.eml").write_bytes(convocation.message.as_bytes())
        print(f"{len(convocations)} message(s) écrit(s) dans {dry_run} (rien n'est envoyé ; "
              "ils contiennent des liens personnels valides : supprimez-les après vérification).")
        return 0
    assert settings.smtp is not None
    data_dir = settings.data_dir
    try:
        with Journal(data_dir / JOURNAL_FILENAME, JournalKey.load_or_create(data_dir / KEY_FILENAME)) as journal:
            deliveries = asyncio.run(send_convocations(settings.smtp, journal, spec.id, convocations))
    except ConvocationError as exc:
        print(f"Envoi interrompu : {exc}", file=sys.stderr)
        return 2
    refused = [d for d in deliveries if d.sent_at is None]
    for delivery in refused:
        print(f"  {delivery.convocation.member} : {delivery.error}", file=sys.stderr)
    print(f"{len(deliveries) - len(refused)} convocation(s) envoyée(s) et journalisée(s), {len(refused)} refusée(s).")
    return 1 if refused else 0
