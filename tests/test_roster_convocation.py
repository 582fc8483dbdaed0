"""signaling/roster.py and signaling/convocation.py: a CSV roster into the settings file; convocations
through a real SMTP server (aiosmtpd on 127.0.0.1), with personal links and a report attached; and
the acknowledgement recorded by POST /api/acknowledge on the real application."""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from config import Settings, load_settings
from config.settings import SmtpSettings
from signaling.admin_cli import add_admin_commands, run_admin_command
from signaling.app import JOURNAL, create_app
from signaling.convocation import ACKNOWLEDGED, SENT, build_convocations, jours_francs, send_convocations
from signaling.journal import JOURNAL_FILENAME, KEY_FILENAME, Journal, JournalKey
from signaling.roster import RosterError, parse_csv, read_csv, update_settings_text, write_settings
from signaling.tokens import TokenSigner

PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
       b"3 0 obj<</Type/Page/MediaBox[0 0 595 842]/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
ROSTER_CSV = ("\ufeffNom;Prénom;Groupe;Courriel;Téléphone\r\n"
              "Dupont;Claire;Majorité;claire.dupont@mairie.example;0102030405\r\n"
              "Benali;Karim;Majorité;karim@example.org;\r\n"
              "Lefèvre;Sophie;« Agir ensemble »;;\r\n")
SETTINGS_TOML = """# Réglages du serveur de la mairie
host = "127.0.0.1"  # derrière le proxy

[[sittings]]
id = "cm-old"
title = "Séance précédente"

[[sittings.members]]
id = "ancien"
name = "Ancien Membre"

[[sittings]]
id = "cm-2026-12-03"
title = "Conseil municipal du 3 décembre 2026"
mode = "hybrid"
regime = "intercommunal"

[[sittings.members]]
id = "old-1"
name = "À remplacer"

[[sittings.agenda]]
id = "1"
title = "Budget"  # le point 1

[[sittings.members]]
id = "old-2"
name = "À remplacer aussi"

[ice]
host_addresses = ["127.0.0.1"]
"""


# --- the roster -------------------------------------------------------------------------------------


def test_csv_from_a_french_spreadsheet_semicolons_bom_first_names_and_made_up_ids() -> None:
    roster = parse_csv(ROSTER_CSV)
    assert [(m.id, m.name, m.group, m.email) for m in roster.members] == [
        ("claire-dupont", "Claire Dupont", "Majorité", "claire.dupont@mairie.example"),
        ("karim-benali", "Karim Benali", "Majorité", "karim@example.org"),
        ("sophie-lefevre", "Sophie Lefèvre", "« Agir ensemble »", None),  # convoked on paper
    ]
    assert roster.ignored_columns == ["Téléphone"]
    comma = parse_csv('name,group,email,id\n"Martin, Camille",A,c@x.example,m-1\nMartin Camille,,,\nMartin Camille,,,\n')
    assert [(m.id, m.name) for m in comma.members] == [("m-1", "Martin, Camille"), ("martin-camille", "Martin Camille"),
                                                       ("martin-camille-2", "Martin Camille")]


def test_csv_errors_are_all_named_by_line_and_nothing_is_imported(tmp_path: Path) -> None:
    text = ("nom;groupe;email;id\n"
            "Dupont;A;claire@mairie.example;m1\n"
            ";A;sans-nom@mairie.example;m2\n"
            "Benali;A;karim@@mairie;m3\n"
            "Lefèvre;B;CLAIRE@mairie.example;m4\n"
            "Roux;B;roux@mairie.example;m1\n"
            "Girard;B;girard@mairie.example;server\n"
            "Haddad;B;haddad@mairie.example;m7;en trop\n")
    with pytest.raises(RosterError) as caught:
        parse_csv(text)
    assert caught.value.problems == [
        "ligne 3 : le nom est vide",
        "ligne 4 : adresse électronique invalide « karim@@mairie » (Benali)",
        "ligne 5 : adresse « CLAIRE@mairie.example » déjà donnée ligne 2",
        "ligne 6 : identifiant « m1 » déjà utilisé ligne 2",
        "ligne 7 : identifiant invalide « server » : 1 à 64 caractères parmi A-Z a-z 0-9 _ : @ - (et pas « server »)",
        "ligne 8 : 5 champs pour 4 colonnes (un « ; » de trop, ou un texte à mettre entre guillemets ?)",
    ]
    with pytest.raises(RosterError, match=r"ligne 1 : pas de colonne « nom »"):
        parse_csv("prénom;email\nClaire;c@x.example\n")
    latin1 = tmp_path / "excel.csv"
    latin1.write_bytes("nom;email\nDupont;a@b.example\nLefèvre;c@d.example\n".encode("cp1252"))
    with pytest.raises(RosterError, match=r"ligne 3 : le fichier n'est pas en UTF-8 .*CSV UTF-8"):
        read_csv(latin1)


def test_import_replaces_one_sittings_members_and_keeps_everything_else(tmp_path: Path) -> None:
    config = tmp_path / "hemicycle.toml"
    config.write_text(SETTINGS_TOML, encoding="utf-8")
    write_settings(config, "cm-2026-12-03", parse_csv(ROSTER_CSV).members)
    text = config.read_text(encoding="utf-8")
    assert "old-1" not in text and "old-2" not in text and 'id = "ancien"' in text
    assert text.startswith('# Réglages du serveur de la mairie\nhost = "127.0.0.1"  # derrière le proxy\n')
    assert 'title = "Budget"  # le point 1\n' in text and text.endswith('[ice]\nhost_addresses = ["127.0.0.1"]\n')
    settings = load_settings(config)
    sitting = settings.sittings[1]
    assert [(m.id, m.email) for m in sitting.members] == [
        ("claire-dupont", "claire.dupont@mairie.example"), ("karim-benali", "karim@example.org"),
        ("sophie-lefevre", None)]
    assert [m.id for m in settings.sittings[0].members] == ["ancien"] and sitting.agenda[0].title == "Budget"
    assert settings.ice.host_addresses == ["127.0.0.1"]
    # a sitting not in the file yet is appended; a file that cannot be edited safely is refused
    added = update_settings_text(text, "cm-2027", parse_csv(ROSTER_CSV).members[:1], title="Séance de janvier")
    assert added.startswith(text) and 'title = "Séance de janvier"' in added
    inline = '[[sittings]]\nid = "s"\ntitle = "t"\nmembers = [{id = "a", name = "A"}]\n'
    with pytest.raises(ValueError, match="membres écrits en ligne"):
        update_settings_text(inline, "s", parse_csv(ROSTER_CSV).members)


def test_roster_command_reports_errors_by_line_or_writes_the_file(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    parser = admin_parser()
    bad = tmp_path / "bad.csv"
    bad.write_text("nom,email\nDupont,pas-une-adresse\n", encoding="utf-8")
    config = tmp_path / "new.toml"
    assert run_admin_command(parser.parse_args(["roster", "import", str(bad), "--sitting", "s", "--config",
                                                str(config)])) == 1
    assert "ligne 2 : adresse électronique invalide « pas-une-adresse » (Dupont)" in capsys.readouterr().err
    assert not config.exists()
    good = tmp_path / "conseil.csv"
    good.write_text(ROSTER_CSV, encoding="utf-8")
    assert run_admin_command(parser.parse_args(["roster", "import", str(good), "--sitting", "s"])) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith('[[sittings.members]]\nid = "claire-dupont"\nname = "Claire Dupont"\n')
    assert "Sans adresse électronique (convocation papier) : Sophie Lefèvre." in printed.err
    assert run_admin_command(parser.parse_args(["roster", "import", str(good), "--sitting", "s", "--config",
                                                str(config), "--title", "Conseil"])) == 0
    assert [m.name for m in load_settings(config).sittings[0].members][-1] == "Sophie Lefèvre"


# --- convocations --------------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@asynccontextmanager
async def smtp_server() -> AsyncIterator[tuple[Inbox, int]]:
    inbox, loop = Inbox(), asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTPServer(inbox, hostname="localhost", loop=loop), "127.0.0.1", 0)
    try:
        yield inbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def council_config(tmp_path: Path, smtp_port: int | None = None) -> Path:
    """A real settings file: the sitting, its roster (one member without email), a report, the mail server."""
    (tmp_path / "rapports").mkdir(exist_ok=True)
    (tmp_path / "rapports" / "budget-2027.pdf").write_bytes(PDF)
    smtp = "" if smtp_port is None else (
        f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nstarttls = false\n'
        'sender = "Mairie de Test <conseil@mairie.example>"\n')
    config = tmp_path / "hemicycle.toml"
    config.write_text(f"""data_dir = "{tmp_path}"
port = 0
demo = false
public_url = "https://visio.mairie.example"

[[sittings]]
id = "cm-2026-12-03"
title = "Conseil municipal du 3 décembre 2026"
regime = "intercommunal"
mode = "hybrid"
place = "salle du conseil, mairie"
starts_at = 2026-12-03T18:30:00
chair = "m1"

[[sittings.agenda]]
id = "1"
title = "Budget primitif 2027"
documents = ["rapports/budget-2027.pdf"]

[[sittings.agenda]]
id = "2"
title = "Subvention au club de football"

[[sittings.members]]
id = "m1"
name = "Claire Dupont"
email = "claire@mairie.example"

[[sittings.members]]
id = "m2"
name = "Karim Benali"
email = "karim@example.org"

[[sittings.members]]
id = "m3"
name = "Sophie Lefèvre"
{smtp}""", encoding="utf-8")
    return config


def admin_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_admin_commands(parser.add_subparsers(dest="command"))
    return parser


def text_part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


async def test_convocations_reach_each_member_with_their_link_the_agenda_and_the_report(tmp_path: Path) -> None:
    async with smtp_server() as (inbox, port):
        settings = load_settings(council_config(tmp_path, port))
        spec, signer = settings.sittings[0], TokenSigner.from_file(settings.secret_path)
        convocations, paper = build_convocations(settings, spec, signer, sender="Mairie <conseil@mairie.example>",
                                                 base_dir=tmp_path)
        assert [m.id for m in paper] == ["m3"]
        key = JournalKey.load_or_create(tmp_path / KEY_FILENAME)
        with Journal(tmp_path / JOURNAL_FILENAME, key) as journal:
            assert settings.smtp is not None
            deliveries = await send_convocations(settings.smtp, journal, spec.id, convocations)
            entries = journal.entries(spec.id)
    assert [d.sent_at is not None for d in deliveries] == [True, True]
    assert [(rcpt, message["To"]) for rcpt, message in inbox.messages] == [
        (["claire@mairie.example"], "Claire Dupont <claire@mairie.example>"),
        (["karim@example.org"], "Karim Benali <karim@example.org>")]
    for (_, message), seat, role in zip(inbox.messages, ("m1", "m2"), ("chair", "councillor")):
        assert message["Subject"] == ("Convocation — Conseil municipal du 3 décembre 2026 — jeudi 3 décembre 2026 "
                                      "à 18 h 30")
        plain, html = text_part(message, "plain"), text_part(message, "html")
        assert "le jeudi 3 décembre 2026 à 18 h 30, salle du conseil, mairie, dans la salle et par visioconférence" in plain
        assert "Modalités techniques : la séance se tient par visioconférence" in plain
        assert "1. Budget primitif 2027 — rapport joint : budget-2027.pdf\n2. Subvention au club de football" in plain
        link = next(line for line in plain.splitlines() if "https://visio.mairie.example/join#token=" in line)
        token = link.split("#token=")[1].strip()
        invitation = TokenSigner((tmp_path / "secret.key").read_bytes()).verify(token)
        assert (invitation.sitting, invitation.seat, invitation.role) == ("cm-2026-12-03", seat, role)
        assert invitation.expires > datetime.fromisoformat("2026-12-04T18:30:00+01:00").timestamp()
        assert f'<a href="https://visio.mairie.example/join#token={token}">' in html and '<html lang="fr">' in html
        attachments = list(message.iter_attachments())
        assert [(a.get_content_type(), a.get_filename()) for a in attachments] == [("application/pdf",
                                                                                   "budget-2027.pdf")]
        assert attachments[0].get_content() == PDF
    sent = [e for e in entries if e.type == SENT]
    assert [(e.actor, e.data["member"]) for e in sent] == [("server", "m1"), ("server", "m2")]
    assert [e.data["message_id"] for e in sent] == [m["Message-ID"].strip() for _, m in inbox.messages]
    assert jours_francs(datetime(2026, 11, 27).date(), datetime(2026, 12, 3).date()) == 5


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[str, web.Application]]:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


async def test_opening_the_link_acknowledges_once_per_member_and_forged_tokens_are_refused(tmp_path: Path) -> None:
    async with smtp_server() as (inbox, port):
        config = council_config(tmp_path, port)
        args = admin_parser().parse_args(["convoke", "--sitting", "cm-2026-12-03", "--config", str(config)])
        assert await asyncio.to_thread(run_admin_command, args) == 0  # the command sends (smtplib, in a thread)
    settings = load_settings(config)
    token = text_part(inbox.messages[1][1], "plain").split("#token=")[1].split()[0]
    signer = TokenSigner.from_file(settings.secret_path)
    async with running_app(settings) as (base, app), aiohttp.ClientSession() as http:  # replays convocation_sent
        async def post(body: Any) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{base}/api/acknowledge", json=body) as response:
                return response.status, await response.json()

        answers = await asyncio.gather(*(post({"token": token}) for _ in range(3)))  # a double click, and more
        assert [status for status, _ in answers] == [200, 200, 200]
        first = next(body for _, body in answers if not body["already"])
        assert sorted(body["already"] for _, body in answers) == [False, True, True]
        assert first["acknowledged"] is True and {body["at"] for _, body in answers} == {first["at"]}
        assert first["member"] == "m2" and first["at"].endswith("Z")
        status, again = await post({"token": token})
        assert status == 200 and again["already"] is True and again["at"] == first["at"]
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        assert await post({"token": forged}) == (403, {"error": "bad_token",
                                                       "message": "invitation refusée : invitation signature is invalid"})
        other = signer.mint("cm-2026-12-03", "Public", "public", lifetime=60)
        assert (await post({"token": other}))[0] == 403
        assert (await post({"token": other}))[1]["error"] == "not_convoked"
        async with http.post(f"{base}/api/acknowledge", data=b"token=x") as response:
            assert response.status == 400 and (await response.json())["error"] == "bad_request"
        entries = app[JOURNAL].entries("cm-2026-12-03")
    acks = [e for e in entries if e.type == ACKNOWLEDGED]
    assert [(e.actor, e.data, e.at) for e in acks] == [("m2", {"member": "m2"}, first["at"])]
    assert [e.data["member"] for e in entries if e.type == SENT] == ["m1", "m2"]


async def test_dry_run_writes_one_eml_per_member_and_sends_nothing(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = council_config(tmp_path)
    out = tmp_path / "eml"
    parser = admin_parser()
    args = parser.parse_args(["convoke", "--sitting", "cm-2026-12-03", "--config", str(config), "--dry-run", str(out)])
    assert await asyncio.to_thread(run_admin_command, args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["m1.eml", "m2.eml"]
    message = email.message_from_bytes((out / "m1.eml").read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage) and message["To"] == "Claire Dupont <claire@mairie.example>"
    assert [a.get_filename() for a in message.iter_attachments()] == ["budget-2027.pdf"]
    printed = capsys.readouterr().out
    assert "À convoquer sur papier (pas d'adresse) : Sophie Lefèvre." in printed and "jour(s) franc(s)" in printed
    assert not (tmp_path / JOURNAL_FILENAME).exists()  # nothing sent, nothing journalled
    args = parser.parse_args(["convoke", "--sitting", "cm-2026-12-03", "--config", str(config)])
    assert await asyncio.to_thread(run_admin_command, args) == 2  # no [smtp]
    assert "Pas de serveur de messagerie" in capsys.readouterr().err


def test_smtp_settings_keep_the_password_out_of_reprs() -> None:
    smtp = SmtpSettings(host="smtp.example", sender="a@b.example", password="s3cret")  # type: ignore[arg-type]
    assert "s3cret" not in repr(smtp) and smtp.password is not None and smtp.password.get_secret_value() == "s3cret"
