"""The roster: council members imported from a spreadsheet (CSV), written into the settings file.

The CSV is what LibreOffice or Excel exports in France: UTF-8 with or without a BOM,
``;`` or ``,`` (or tab) between fields, one header line. Columns, in any order and case,
accents ignored: ``nom``/``name`` (required), ``prénom``/``first_name`` (optional, put
before the name), ``groupe``/``group``, ``email``/``courriel``/``mail``, ``id``/``identifiant``.
A member without an email is convoked on paper (CGCT L2121-10). Without an ``id``
column, ids are made from the names (``camille-martin``).

Every problem is reported with its line number; nothing is written unless the whole
file is valid. The settings file keeps all its other content: only the
``[[sittings.members]]`` tables of the chosen sitting are replaced, and the result is
re-read with ``tomllib`` to check that nothing else changed before it replaces the file.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .journal import ACTOR_ID

HEADERS = {
    "name": ("nom", "name", "nom complet", "full name"),
    "first_name": ("prenom", "first name", "firstname", "first_name"),
    "group": ("groupe", "group", "groupe politique", "liste"),
    "email": ("email", "e-mail", "courriel", "mail", "adresse electronique"),
    "id": ("id", "identifiant"),
}
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL = re.compile(rf"[^@\s<>(),;:\"\[\]]+@{LABEL}(?:\.{LABEL})+")
RESERVED_IDS = frozenset({"server"})  # the journal's actor for the server itself
HEADER_LINE = re.compile(r"\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")


@dataclass(frozen=True)
class RosterMember:
    id: str
    name: str
    group: str | None
    email: str | None
    line: int  # in the CSV file


@dataclass(frozen=True)
class Roster:
    members: list[RosterMember]
    ignored_columns: list[str]  # columns of the file that are not imported (telephone, address...)


class RosterError(Exception):
    """The file cannot be imported; ``problems`` lists every defect, by line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.strip().lower().replace("_", " "))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def slug(name: str) -> str:
    """An id made from a name: ``Éloïse d'Aubigné`` → ``eloise-d-aubigne``."""
    return re.sub(r"[^a-z0-9]+", "-", _fold(name)).strip("-")[:64] or "membre"


def read_csv(path: Path | str) -> Roster:
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RosterError([f"ligne {line} : le fichier n'est pas en UTF-8 (octet {raw[exc.start]:#04x}) ; "
                           "enregistrez-le en « CSV UTF-8 » (Excel) ou « Unicode (UTF-8) » (LibreOffice)"]) from exc
    return parse_csv(text)


def parse_csv(text: str) -> Roster:
    """Members from CSV text; raises :class:`RosterError` naming each bad line."""
    text = text.removeprefix("\ufeff")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise RosterError(["ligne 1 : le fichier est vide (une ligne d'en-tête est attendue : nom;groupe;email)"])
    delimiter = max(";,\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = [(reader.line_num, row) for row in reader]
    header_line, header = next((n, row) for n, row in rows if any(cell.strip() for cell in row))
    columns: dict[str, int] = {}
    problems: list[str] = []
    ignored: list[str] = []
    for index, title in enumerate(header):
        key = next((k for k, names in HEADERS.items() if _fold(title) in names), None)
        if key is None:
            ignored.append(title.strip())
        elif key in columns:
            problems.append(f"ligne {header_line} : la colonne « {title.strip()} » apparaît deux fois")
        else:
            columns[key] = index
    if "name" not in columns:
        problems.insert(0, f"ligne {header_line} : pas de colonne « nom » (ou « name ») dans l'en-tête "
                           f"{delimiter.join(header)!r}")
        raise RosterError(problems)
    members: list[RosterMember] = []
    seen_ids: dict[str, int] = {}
    seen_emails: dict[str, int] = {}
    for line, row in rows:
        if line <= header_line or not any(cell.strip() for cell in row):
            continue

        def cell(key: str, row: list[str] = row) -> str:
            index = columns.get(key)
            return row[index].strip() if index is not None and index < len(row) else ""

        if len(row) > len(header):
            problems.append(f"ligne {line} : {len(row)} champs pour {len(header)} colonnes "
                            f"(un « {delimiter} » de trop, ou un texte à mettre entre guillemets ?)")
            continue
        name = " ".join(part for part in (cell("first_name"), cell("name")) if part)
        if not cell("name"):
            problems.append(f"ligne {line} : le nom est vide")
            continue
        email = cell("email") or None
        if email is not None and (len(email) > 254 or not EMAIL.fullmatch(email)):
            problems.append(f"ligne {line} : adresse électronique invalide « {email} » ({name})")
            continue
        explicit = cell("id")
        member_id = explicit or slug(name)
        if explicit and (not ACTOR_ID.fullmatch(explicit) or explicit in RESERVED_IDS):
            problems.append(f"ligne {line} : identifiant invalide « {explicit} » : 1 à 64 caractères parmi "
                            "A-Z a-z 0-9 _ : @ - (et pas « server »)")
            continue
        if member_id in seen_ids:
            if explicit:
                problems.append(f"ligne {line} : identifiant « {member_id} » déjà utilisé ligne {seen_ids[member_id]}")
                continue
            stem = member_id[:60]
            member_id = next(f"{stem}-{n}" for n in range(2, 10_000) if f"{stem}-{n}" not in seen_ids)
        if email is not None:
            if email.lower() in seen_emails:
                problems.append(f"ligne {line} : adresse « {email} » déjà donnée ligne {seen_emails[email.lower()]}")
                continue
            seen_emails[email.lower()] = line
        seen_ids[member_id] = line
        members.append(RosterMember(member_id, name, cell("group") or None, email, line))
    if not members and not problems:
        problems.append(f"ligne {header_line + 1} : aucun membre après l'en-tête")
    if problems:
        raise RosterError(problems)
    return Roster(members, [column for column in ignored if column])


# --- TOML: a minimal writer, and an in-place update of one sitting's roster ---------------------


def toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return f'"{escaped}"'


def members_toml(members: list[RosterMember]) -> str:
    """``[[sittings.members]]`` tables, one per member."""
    blocks = []
    for member in members:
        lines = ["[[sittings.members]]", f"id = {toml_string(member.id)}", f"name = {toml_string(member.name)}"]
        if member.group:
            lines.append(f"group = {toml_string(member.group)}")
        if member.email:
            lines.append(f"email = {toml_string(member.email)}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _member_dicts(members: list[RosterMember]) -> list[dict[str, Any]]:
    return [{k: v for k, v in (("id", m.id), ("name", m.name), ("group", m.group), ("email", m.email)) if v}
            for m in members]


def update_settings_text(text: str, sitting: str, members: list[RosterMember], title: str | None = None) -> str:
    """``text`` (a settings TOML file) with the roster of ``sitting`` replaced by ``members``.

    A sitting not in the file is appended (``title`` defaults to its id). Raises
    ``ValueError`` when the file cannot be edited safely."""
    before = tomllib.loads(text)
    sittings = before.get("sittings", [])
    if not isinstance(sittings, list) or not all(isinstance(s, dict) for s in sittings):
        raise ValueError("« sittings » doit être une liste de tables [[sittings]]")
    index = next((i for i, s in enumerate(sittings) if s.get("id") == sitting), None)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if index is None:
        header = f"[[sittings]]\nid = {toml_string(sitting)}\ntitle = {toml_string(title or sitting)}\n\n"
        new_text = "".join(lines) + ("\n" if lines else "") + header + members_toml(members)
    else:
        new_text = _replace_members(lines, index, members)
    try:
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        after = None
    expected = dict(before)
    expected_sittings = [dict(s) for s in sittings]
    if index is None:
        expected_sittings.append({"id": sitting, "title": title or sitting, "members": _member_dicts(members)})
    else:
        expected_sittings[index]["members"] = _member_dicts(members)
    expected["sittings"] = expected_sittings
    if after != expected:
        raise ValueError("le fichier de réglages n'a pas pu être modifié sans toucher au reste (membres écrits "
                         "en ligne, « members = [...] » ?) ; ajoutez les membres à la main : "
                         "« hemicycle roster import » sans --config les affiche")
    return new_text


def _table(line: str) -> tuple[str, str] | None:
    match = HEADER_LINE.match(line)
    if match is None or line.lstrip().startswith("[[") != line.rstrip().split("#")[0].rstrip().endswith("]]"):
        return None
    name = re.sub(r"\s+", "", match.group(1)).replace('"', "").replace("'", "")
    return ("[[" if line.lstrip().startswith("[[") else "[", name)


def _replace_members(lines: list[str], index: int, members: list[RosterMember]) -> str:
    out: list[str] = []
    sitting_no = -1
    inside = skipping = False
    inserted = False
    for line in lines:
        table = _table(line)
        if table is not None:
            if inside and not table[1].startswith("sittings.") and not inserted:
                out.append(_spaced(out) + members_toml(members) + "\n")
                inserted = True
            if table == ("[[", "sittings"):
                sitting_no += 1
            inside = sitting_no == index and (table == ("[[", "sittings") or table[1].startswith("sittings."))
            skipping = inside and table == ("[[", "sittings.members")
        if not skipping:
            out.append(line)
    if inside and not inserted:
        out.append(_spaced(out) + members_toml(members))
    return "".join(out)


def _spaced(out: list[str]) -> str:
    return "" if not out or out[-1].strip() == "" else "\n"


def write_settings(path: Path, sitting: str, members: list[RosterMember], title: str | None = None) -> None:
    """Replace the roster of ``sitting`` in the settings file ``path`` (created if missing), atomically."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    new_text = update_settings_text(text, sitting, members, title)
    temporary = path.with_name(f".{path.name}.roster.tmp")
    temporary.write_text(new_text, encoding="utf-8")
    if path.exists():
        os.chmod(temporary, path.stat().st_mode & 0o7777)
    os.replace(temporary, path)
