"""The wire protocol between the web client and the server, defined once.

Every WebSocket frame is one JSON object with a ``type`` field. Messages from the
client are parsed with :data:`ClientMessageAdapter`, messages to the client are
built from the models below and serialised with :func:`dump`. ``docs/protocol.md``
documents them with examples that ``tests/test_protocol_doc.py`` validates.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from .protocol_sitting import Notice, SittingCommand, SittingState, WaitingRoom
from .protocol_types import Kind, Role, Source, _Message

__all__ = ["Kind", "Role", "Source"]

PROTOCOL_VERSION = 1
# A subscriber's SDP has two m-lines per other member (about 0.5 KB audio, 0.8 KB video in
# Chromium's answers): a 45-member sitting's answer is ~60 KB, a 200-member one ~320 KB.
MAX_SDP_LENGTH = 1024 * 1024
MAX_NAME_LENGTH = 80


# ---------------------------------------------------------------- client -> server


class Hello(_Message):
    """First message on every connection: the protocol version and the invitation."""

    type: Literal["hello"]
    version: int
    token: str = Field(min_length=1, max_length=4096)


class PublishedTrack(_Message):
    mid: str = Field(min_length=1, max_length=16)
    source: Source


class Publish(_Message):
    """An SDP offer for the publishing peer connection, and what each m-line carries."""

    type: Literal["publish"]
    sdp: str = Field(min_length=1, max_length=MAX_SDP_LENGTH)
    tracks: list[PublishedTrack] = Field(max_length=8)


class Unpublish(_Message):
    """Stop forwarding one source (e.g. the screen share ended). The m-line stays."""

    type: Literal["unpublish"]
    source: Source


class SetSourceMuted(_Message):
    """The member mutes or unmutes their own microphone, or turns their camera off/on."""

    type: Literal["set_muted"]
    source: Source
    muted: bool


class ReceiveVideos(_Message):
    """How many videos the member wants at most (a small screen, a weak connection; 0: none).
    The server's ``media.max_videos`` still caps it; the answer is a :class:`VideoSelection`."""

    type: Literal["receive_videos"]
    max: int = Field(ge=0, le=100)


class SubscribeAnswer(_Message):
    """The answer to a :class:`SubscribeOffer`, carrying back its ``revision``."""

    type: Literal["subscribe_answer"]
    revision: int = Field(ge=0)
    sdp: str = Field(min_length=1, max_length=MAX_SDP_LENGTH)


class Leave(_Message):
    type: Literal["leave"]


ClientMessage = Annotated[
    Hello | Publish | Unpublish | SetSourceMuted | ReceiveVideos | SubscribeAnswer | Leave | SittingCommand,
    Field(discriminator="type"),
]
ClientMessageAdapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


# ---------------------------------------------------------------- server -> client


class SourceState(_Message):
    source: Source
    muted: bool


class ParticipantInfo(_Message):
    id: str
    name: str
    role: Role
    connected: bool
    sources: list[SourceState]


class SittingInfo(_Message):
    id: str
    title: str


class IceServer(_Message):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Welcome(_Message):
    """Answer to a valid :class:`Hello`: who you are and who is already there."""

    type: Literal["welcome"] = "welcome"
    version: int = PROTOCOL_VERSION
    you: ParticipantInfo
    sitting: SittingInfo
    participants: list[ParticipantInfo]
    ice_servers: list[IceServer]


class ParticipantJoined(_Message):
    type: Literal["participant_joined"] = "participant_joined"
    participant: ParticipantInfo


class ParticipantUpdated(_Message):
    type: Literal["participant_updated"] = "participant_updated"
    participant: ParticipantInfo


class ParticipantLeft(_Message):
    type: Literal["participant_left"] = "participant_left"
    participant_id: str


class PublishAnswer(_Message):
    type: Literal["publish_answer"] = "publish_answer"
    sdp: str


class Slot(_Message):
    """One m-line of the subscribing peer connection and what it currently carries.

    A slot whose ``participant_id`` is ``None`` is free: it sends nothing.
    """

    mid: str
    kind: Kind
    participant_id: str | None
    source: Source | None


class SubscribeOffer(_Message):
    """A (re)offer for the subscribing peer connection, with the full slot table."""

    type: Literal["subscribe_offer"] = "subscribe_offer"
    revision: int
    sdp: str
    slots: list[Slot]


class SubscribeSlots(_Message):
    """The slot table alone: slots of the current connection re-pointed (a member arrived and took
    a free slot, or left and freed one) without a new offer. ``revision`` is the offer the slots
    come from; a client that has not answered that offer yet keeps waiting for it."""

    type: Literal["subscribe_slots"] = "subscribe_slots"
    revision: int
    slots: list[Slot]


class VideoRef(_Message):
    participant_id: str
    source: Source


class VideoSelection(_Message):
    """The videos the server forwards to you now: at most ``limit``, chosen for the sitting (screen
    shares, the floor, the chair, the chamber, the last speakers). Other cameras that are on reach
    you as their slot but send nothing: show their name instead of a frozen picture."""

    type: Literal["video_selection"] = "video_selection"
    limit: int
    videos: list[VideoRef]


class ActiveSpeaker(_Message):
    type: Literal["active_speaker"] = "active_speaker"
    participant_id: str | None


ErrorCode = Literal[
    "bad_json",
    "bad_message",
    "too_large",
    "rate_limited",
    "not_ready",
    "bad_version",
    "bad_token",
    "expired_token",
    "wrong_sitting",
    "bad_sdp",
    "no_codec",
    "forbidden",
    "replaced",
    "server_error",
]


class Error(_Message):
    """Something the client sent was refused. ``fatal`` errors close the connection."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    fatal: bool = False


ServerMessage = Annotated[
    Welcome
    | ParticipantJoined
    | ParticipantUpdated
    | ParticipantLeft
    | PublishAnswer
    | SubscribeOffer
    | SubscribeSlots
    | VideoSelection
    | ActiveSpeaker
    | SittingState
    | WaitingRoom
    | Notice
    | Error,
    Field(discriminator="type"),
]
ServerMessageAdapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def dump(message: BaseModel) -> str:
    """Serialise a server message to the JSON text sent on the WebSocket (never raises on text)."""
    try:
        return message.model_dump_json()
    except ValueError:  # e.g. a lone surrogate: send it escaped rather than not at all
        return json.dumps(message.model_dump(mode="python"), ensure_ascii=True, default=str)
