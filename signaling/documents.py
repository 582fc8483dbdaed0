"""Documents as blocks (headings, paragraphs, lists, tables, links), rendered as
Markdown or plain text and as a standalone, printable, accessible HTML page
(lang="fr", embedded CSS, nothing external). Used by the minutes and the convocations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"fuseau horaire inconnu : {name!r} (réglage timezone, ex. « Europe/Paris »)") from exc





@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Items:
    items: list[str]
    ordered: bool = False


@dataclass(frozen=True)
class Table:
    caption: str
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Link:
    label: str
    url: str


Block = Heading | Para | Items | Table | Link
WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre")
MODES = {"chamber": "en présentiel, dans la salle", "hybrid": "en présentiel et par visioconférence (séance mixte)",
         "remote": "par visioconférence"}
METHODS = {"show_of_hands": "à main levée", "roll_call": "par appel nominal", "secret": "scrutin secret",
           "electronic": "vote électronique nominatif"}
CHOICES = {"for": "pour", "against": "contre", "abstain": "abstention", "not_voting": "ne prend pas part au vote"}
KINDS = {"budget_primitif": "budget primitif", "election": "élection", "designation": "désignation"}
TO_COMPLETE = "……… (à compléter)"


def french_date(moment: datetime) -> str:
    day = "1er" if moment.day == 1 else str(moment.day)
    return f"{WEEKDAYS[moment.weekday()]} {day} {MONTHS[moment.month - 1]} {moment.year}"


def french_hour(moment: datetime) -> str:
    return f"{moment.hour} h {moment.minute:02d}"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _md(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_[]<>|#" else c for c in text)


def render_text(blocks: Sequence[Block], plain: bool = False) -> str:
    """Markdown; ``plain``: plain text (no escapes, underlined headings), e.g. for an email."""
    esc = (lambda text: text) if plain else _md
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(block.text + "\n" + "=-~"[block.level - 1] * len(block.text) if plain
                       else "#" * block.level + " " + esc(block.text))
        elif isinstance(block, Para):
            out.append(esc(block.text))
        elif isinstance(block, Link):
            out.append(f"{block.label} : {block.url}" if plain else f"[{esc(block.label)}](<{block.url}>)")
        elif isinstance(block, Items):
            out.append("\n".join((f"{n}. " if block.ordered else "- ") + esc(t) for n, t in enumerate(block.items, 1)))
        elif plain:
            out.append(block.caption + " :\n" + "\n".join("- " + " ; ".join(filter(None, row)) for row in block.rows))
        else:
            rows = [block.headers, ["---"] * len(block.headers), *block.rows]
            lines = ["| " + " | ".join(esc(cell) for cell in row) + " |" for row in rows]
            out.append(f"{esc(block.caption)} :\n\n" + "\n".join(lines))
    return "\n\n".join(out) + "\n"


CSS = """
body { font: 11pt/1.45 "Liberation Serif", "Times New Roman", Georgia, serif; color: #111; background: #fff;
       max-width: 48rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #555; margin-top: 1.6rem; }
h3 { font-size: 1.05rem; } table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
caption { text-align: left; font-weight: bold; padding: .25rem 0; }
th, td { border: 1px solid #444; padding: .2rem .4rem; text-align: left; vertical-align: top; }
th { background: #e8e8e8; } p, li { overflow-wrap: anywhere; }
@page { size: A4; margin: 2cm 1.8cm; }
@media print { body { margin: 0; max-width: none; } h2, h3 { break-after: avoid; } tr { break-inside: avoid; }
               thead { display: table-header-group; } }
"""


def render_html(blocks: Sequence[Block], title: str, css: str = CSS) -> str:
    """A standalone, printable HTML document (lang="fr", no external resource)."""
    from html import escape

    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{escape(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            body.append(f"<p>{escape(block.text)}</p>")
        elif isinstance(block, Link):
            body.append(f'<p><a href="{escape(block.url)}">{escape(block.label)}</a></p>')
        elif isinstance(block, Items):
            tag = "ol" if block.ordered else "ul"
            body.append(f"<{tag}>" + "".join(f"<li>{escape(t)}</li>" for t in block.items) + f"</{tag}>")
        else:
            head = "".join(f'<th scope="col">{escape(h)}</th>' for h in block.headers)
            rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in block.rows)
            body.append(f"<table><caption>{escape(block.caption)}</caption><thead><tr>{head}</tr></thead>"
                        f"<tbody>{rows}</tbody></table>")
    return (f'<!DOCTYPE html>\n<html lang="fr">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{escape(title)}</title>\n'
            f"<style>{css}</style>\n</head>\n<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n")
