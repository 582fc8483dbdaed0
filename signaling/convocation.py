"""Convocation by email (CGCT L2121-10), with each member's personal join link, and its acknowledgement.

:func:`build_convocations` writes one message per member with an email address:
French plain text with an HTML alternative; the date, place and mode of the sitting
(and, when members sit remotely, the technical modalities); the agenda; the reports
attached; the member's personal invitation (seat = member id, role ``chair`` for the
configured chair, else ``councillor``). :func:`send_convocations` sends them through
the configured SMTP server (stdlib ``smtplib``, in a thread) and journals each message
the server accepted (``convocation_sent`` {member, message_id}). Opening the link
acknowledges receipt: the join page POSTs ``{"token": ...}`` to ``/api/acknowledge``
(:func:`acknowledge`), which journals ``convocation_acknowledged`` {member} once per member.
"""

from __future__ import annotations

import asyncio
import mimetypes
import smtplib
import ssl
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any

from aiohttp import web

from config.settings import MemberSettings, Settings, SittingSettings, SmtpSettings

from .documents import CSS, Block, Heading, Items, Link, Para, french_date, french_hour, render_html, render_text, zone
from .journal import Journal
from .protocol import Role
from .regimes import regime
from .tokens import TokenError, TokenSigner

SENT = "convocation_sent"
ACKNOWLEDGED = "convocation_acknowledged"
MODES = {"chamber": "dans la salle", "hybrid": "dans la salle et par visioconférence (séance mixte)",
         "remote": "par visioconférence"}
EMAIL_CSS = CSS.replace("max-width: 48rem; margin: 2rem auto;", "max-width: 40rem; margin: 1rem;")


class ConvocationError(Exception):
    """The convocations cannot be built or sent (no date, a missing report, the mail server...)."""


@dataclass(frozen=True)
class Convocation:
    member: str  # the member's id (their seat)
    message: EmailMessage
    message_id: str
    link: str  # the personal join link: holds a valid invitation, never log it


def sitting_start(spec: SittingSettings, timezone: str) -> datetime:
    if spec.starts_at is None:
        raise ConvocationError(f"la séance {spec.id} n'a pas de date : ajoutez starts_at = 2026-12-03T18:30:00 "
                               "à sa table [[sittings]]")
    start = spec.starts_at
    return start if start.tzinfo is not None else start.replace(tzinfo=zone(timezone))


def jours_francs(sent: date, sitting: date) -> int:
    """Whole days between sending and the sitting, neither counted (CGCT L2121-11, L2121-12)."""
    return (sitting - sent).days - 1


def _documents(spec: SittingSettings, base_dir: Path) -> dict[Path, bytes]:
    found: dict[Path, bytes] = {}
    missing: list[str] = []
    for item in spec.agenda:
        for document in item.documents:
            path = document if document.is_absolute() else base_dir / document
            try:
                found.setdefault(path, path.read_bytes())
            except OSError as exc:
                missing.append(f"{path} (point « {item.title} ») : {exc.strerror}")
    if missing:
        raise ConvocationError("rapport(s) introuvable(s) :\n  " + "\n  ".join(missing))
    return found


def _body(spec: SittingSettings, member: MemberSettings, start: datetime, link: str) -> list[Block]:
    rules = regime(spec.regime)
    chair = next((m.name for m in spec.members if m.id == spec.chair), None)
    where = f"{spec.place}, " if spec.place else ""
    blocks: list[Block] = [
        Heading(1, f"Convocation — {spec.title}"),
        Para(f"{member.name},"),
        Para(f"Vous êtes convoqué(e) à la séance « {spec.title} », le {french_date(start)} à {french_hour(start)}, "
             f"{where}{MODES[spec.mode]}."),
    ]
    if spec.mode != "chamber":
        quorum = "comptent" if rules.quorum.counts_remote else "ne comptent pas"
        blocks.append(Para(
            "Modalités techniques : la séance se tient par visioconférence sur le serveur Hemicycle de la "
            "collectivité. Rejoignez-la avec votre lien personnel ci-dessous, depuis un navigateur récent "
            "(Firefox, Chrome, Edge ou Safari), avec micro et caméra ; ce lien vous identifie et ne doit pas être "
            "transmis. La séance est retransmise en direct au public. "
            f"Les membres présents à distance {quorum} pour le quorum "
            f"({rules.legal_basis}) ; les votes à distance se font au scrutin public, nominatif."))
    blocks.append(Heading(2, "Ordre du jour"))
    blocks.append(Items([item.title + (f" — rapport joint : {', '.join(d.name for d in item.documents)}"
                                       if item.documents else "") for item in spec.agenda] or ["(à venir)"],
                        ordered=True))
    blocks += [
        Heading(2, "Votre lien personnel"),
        Link("Rejoindre la séance et accuser réception de cette convocation", link),
        Para("L'ouverture de ce lien vaut accusé de réception de la présente convocation ; son heure est enregistrée "
             "dans le journal de la séance."),
        Para("En cas d'empêchement, vous pouvez donner pouvoir écrit à un collègue de votre choix (CGCT L2121-20)."),
        Para(f"{chair}, présidence de séance" if chair else "La présidence de séance"),
    ]
    return blocks


def build_convocations(
    settings: Settings, spec: SittingSettings, signer: TokenSigner, *, sender: str,
    base_dir: Path | None = None, now: float | None = None,
) -> tuple[list[Convocation], list[MemberSettings]]:
    """One message per member with an email; and the members without one (to convoke on paper).
    ``base_dir``: where relative document paths start (the settings file's folder)."""
    start = sitting_start(spec, settings.timezone)
    now = time.time() if now is None else now
    documents = _documents(spec, base_dir or Path.cwd())
    lifetime = max(settings.token_lifetime_hours * 3600, start.timestamp() + 86_400 - now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "hemicycle.invalid"
    convocations: list[Convocation] = []
    for member in spec.members:
        if not member.email:
            continue
        role: Role = "chair" if member.id == spec.chair else "councillor"
        token = signer.mint(spec.id, member.name, role, lifetime=lifetime, seat=member.id)
        link = f"{settings.base_url}/join#token={token}"
        blocks = _body(spec, member, start, link)
        message = EmailMessage()
        message_id = make_msgid("convocation", domain=domain)
        message["Subject"] = f"Convocation — {spec.title} — {french_date(start)} à {french_hour(start)}"
        message["From"] = sender
        message["To"] = formataddr((member.name, member.email))
        message["Date"] = formatdate(now, localtime=True)
        message["Message-ID"] = message_id
        message.set_content(render_text(blocks, plain=True))
        message.add_alternative(render_html(blocks, f"Convocation — {spec.title}", EMAIL_CSS), subtype="html")
        for path, data in documents.items():
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            maintype, _, subtype = kind.partition("/")
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
        convocations.append(Convocation(member.id, message, message_id, link))
    return convocations, [m for m in spec.members if not m.email]


@dataclass(frozen=True)
class Delivery:
    convocation: Convocation
    sent_at: float | None  # None: refused, see error
    error: str | None = None


def deliver(smtp: SmtpSettings, convocations: Sequence[Convocation],
            on_sent: Callable[[Convocation, float], None] = lambda c, t: None) -> list[Delivery]:
    """Blocking: one SMTP session for all messages; ``on_sent`` right after each is accepted."""
    context = ssl.create_default_context()
    results: list[Delivery] = []
    try:
        client = (smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context) if smtp.implicit_tls
                  else smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout))
        with client:
            if smtp.starttls and not smtp.implicit_tls:
                client.starttls(context=context)
            if smtp.username:
                client.login(smtp.username, smtp.password.get_secret_value() if smtp.password else "")
            for convocation in convocations:
                try:
                    client.send_message(convocation.message)
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
                    results.append(Delivery(convocation, None, f"refusé par le serveur : {exc}"))
                    continue
                sent_at = time.time()
                on_sent(convocation, sent_at)
                results.append(Delivery(convocation, sent_at))
    except (OSError, smtplib.SMTPException) as exc:
        raise ConvocationError(f"serveur SMTP {smtp.host}:{smtp.port} : {exc} "
                               f"({len(results)} message(s) envoyé(s) avant l'erreur)") from exc
    return results


async def send_convocations(smtp: SmtpSettings, journal: Journal, sitting: str,
                            convocations: Sequence[Convocation]) -> list[Delivery]:
    """Send, and journal each accepted message with its time (before sending the next)."""

    def journal_it(convocation: Convocation, sent_at: float) -> None:
        data = {"member": convocation.member, "message_id": convocation.message_id}
        journal.append_sync(sitting, "server", SENT, data, at=sent_at)

    return await asyncio.to_thread(deliver, smtp, convocations, journal_it)


# --- the acknowledgement: POST /api/acknowledge {"token": "..."} -------------------------------------

_locks: weakref.WeakKeyDictionary[web.Application, asyncio.Lock] = weakref.WeakKeyDictionary()


def _refuse(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def acknowledge(request: web.Request) -> web.Response:
    """Record, once per member, that they opened their convocation link. 200 with the time
    recorded (``already``: true when it was recorded before); 400 malformed; 403 refused."""
    from .app import HUB, JOURNAL

    try:
        body: Any = await request.json()
    except ValueError:
        return _refuse(400, "bad_request", "le corps doit être un objet JSON {\"token\": \"…\"}")
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not 0 < len(token) <= 4096:
        return _refuse(400, "bad_request", "le corps doit être un objet JSON {\"token\": \"…\"}")
    hub = request.app[HUB]
    try:
        invitation = hub.signer.verify(token)
    except TokenError as exc:
        return _refuse(403, exc.code, f"invitation refusée : {exc}")
    spec = next((s for s in hub.settings.sittings if s.id == invitation.sitting), None)
    if spec is None or all(m.id != invitation.seat for m in spec.members):
        return _refuse(403, "not_convoked", "cette invitation n'est pas celle d'un membre convoqué à une séance ici")
    journal = request.app[JOURNAL]
    lock = _locks.setdefault(request.app, asyncio.Lock())
    async with lock:
        entries = await asyncio.to_thread(journal.entries, spec.id)
        earlier = next((e for e in entries if e.type == ACKNOWLEDGED and e.data.get("member") == invitation.seat), None)
        if earlier is not None:
            return web.json_response({"acknowledged": True, "member": invitation.seat, "at": earlier.at,
                                      "already": True})
        entry = await journal.append(spec.id, invitation.seat, ACKNOWLEDGED, {"member": invitation.seat})
    return web.json_response({"acknowledged": True, "member": invitation.seat, "at": entry.at, "already": False})
