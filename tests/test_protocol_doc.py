"""Every example in docs/protocol.md is a valid message, and every message type has one."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

from signaling import protocol as p

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def _examples() -> list[dict[str, typing.Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    return [json.loads(block) for block in blocks]


def _types(union: typing.Any) -> set[str]:
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(m.model_fields["type"].annotation)[0] for m in members}


def test_every_example_validates() -> None:
    client_types = _types(p.ClientMessage)
    for example in _examples():
        adapter = p.ClientMessageAdapter if example["type"] in client_types else p.ServerMessageAdapter
        adapter.validate_python(example)


def test_every_message_type_is_documented() -> None:
    documented = {e["type"] for e in _examples()}
    assert _types(p.ClientMessage) | _types(p.ServerMessage) <= documented
