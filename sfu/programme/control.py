"""The programme's control messages: one JSON object a line on stdin, from the SFU.

Strict models (no coercion, no unknown keys), told apart by ``type``. A line that
does not parse is the caller's to report and skip: :func:`parse_line` raises
``ValueError`` (pydantic's ``ValidationError`` is one).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Ssrc = Annotated[int, Field(ge=0, le=0xFFFF_FFFF)]
Text = Annotated[str, Field(max_length=2000)]  # generous: the pictures ellipsize; a refused scene is worse


class _Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class SourceAdded(_Message):
    """A member's track now reaches the programme as plain RTP with this SSRC."""

    type: Literal["source"]
    ssrc: Ssrc
    kind: Literal["audio", "video"]
    codec: Literal["opus", "vp8", "h264"]
    payload_type: Annotated[int, Field(ge=96, le=127)]


class SourceRemoved(_Message):
    type: Literal["source_removed"]
    ssrc: Ssrc


class Caption(_Message):
    """The lower third over the shown member: their name, and the agenda item below."""

    name: Text
    detail: Text | None = None


class Slate(_Message):
    """A full picture instead of anyone's video: a suspension, a closed session."""

    title: Text
    detail: Text | None = None


class Card(_Message):
    """A full picture with a title and a few lines: a vote's result."""

    title: Text
    lines: Annotated[tuple[Text, ...], Field(max_length=50)] = ()


class Scene(_Message):
    """What the public sees and hears; precedence slate > card > video (with caption) > title.

    ``audio`` lists the SSRCs mixed; an empty list is silence (the chair's privacy
    cut, a closed session).
    """

    type: Literal["scene"] = "scene"
    title: Text
    audio: Annotated[tuple[Ssrc, ...], Field(max_length=1000)]
    video: Ssrc | None
    caption: Caption | None = None
    slate: Slate | None = None
    card: Card | None = None

    @property
    def shows_video(self) -> bool:
        """True when the picture is the member's video (no slate or card on top)."""
        return self.slate is None and self.card is None and self.video is not None


class Keyframe(_Message):
    """Force an IDR picture now."""

    type: Literal["keyframe"]


class Stop(_Message):
    """Finish cleanly: end the HLS playlist and exit (stdin closing means the same)."""

    type: Literal["stop"]


ControlMessage = Annotated[SourceAdded | SourceRemoved | Scene | Keyframe | Stop, Field(discriminator="type")]
_ADAPTER: TypeAdapter[ControlMessage] = TypeAdapter(ControlMessage)


def parse_line(line: str | bytes) -> ControlMessage:
    """One control line to its message; ``ValueError`` if it is not valid JSON or not a known message."""
    return _ADAPTER.validate_json(line)
