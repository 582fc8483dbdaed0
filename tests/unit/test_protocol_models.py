"""signaling/protocol.py: what the server accepts from clients and what it sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from signaling import protocol as p

SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"

VALID: list[tuple[dict[str, Any], type]] = [
    ({"type": "hello", "version": 1, "token": "abc.def"}, p.Hello),
    ({"type": "publish", "sdp": SDP, "tracks": [{"mid": "0", "source": "mic"}, {"mid": "1", "source": "camera"}]},
     p.Publish),
    ({"type": "publish", "sdp": SDP, "tracks": []}, p.Publish),
    ({"type": "unpublish", "source": "screen"}, p.Unpublish),
    ({"type": "set_muted", "source": "mic", "muted": True}, p.SetSourceMuted),
    ({"type": "subscribe_answer", "revision": 0, "sdp": SDP}, p.SubscribeAnswer),
    ({"type": "leave"}, p.Leave),
]


@pytest.mark.parametrize(("raw", "model"), VALID, ids=[r["type"] + str(i) for i, (r, _) in enumerate(VALID)])
def test_client_messages_parse(raw: dict[str, Any], model: type) -> None:
    message = p.ClientMessageAdapter.validate_python(raw)
    assert type(message) is model
    assert message.model_dump() == raw
    assert p.ClientMessageAdapter.validate_json(json.dumps(raw)) == message


def test_publish_tracks_are_models() -> None:
    message = p.ClientMessageAdapter.validate_python(VALID[1][0])
    assert isinstance(message, p.Publish)
    assert [(t.mid, t.source) for t in message.tracks] == [("0", "mic"), ("1", "camera")]


BIG = "x" * (p.MAX_SDP_LENGTH + 1)
INVALID: dict[str, Any] = {
    "unknown type": {"type": "subscribe", "sdp": SDP},
    "no type": {"version": 1, "token": "t"},
    "type not a string": {"type": 1},
    "server type from client": {"type": "welcome"},
    "not an object": ["hello", 1, "t"],
    "a string": "hello",
    "hello without token": {"type": "hello", "version": 1},
    "hello without version": {"type": "hello", "token": "t"},
    "empty token": {"type": "hello", "version": 1, "token": ""},
    "huge token": {"type": "hello", "version": 1, "token": "t" * 4097},
    "extra field": {"type": "hello", "version": 1, "token": "t", "admin": True},
    "extra field on leave": {"type": "leave", "reason": "bye"},
    "extra field in track": {"type": "publish", "sdp": SDP, "tracks": [{"mid": "0", "source": "mic", "x": 1}]},
    "version null": {"type": "hello", "version": None, "token": "t"},
    "version list": {"type": "hello", "version": [1], "token": "t"},
    "version word": {"type": "hello", "version": "one", "token": "t"},
    "version fractional": {"type": "hello", "version": 1.5, "token": "t"},
    "oversized publish sdp": {"type": "publish", "sdp": BIG, "tracks": []},
    "oversized answer sdp": {"type": "subscribe_answer", "revision": 1, "sdp": BIG},
    "empty sdp": {"type": "subscribe_answer", "revision": 1, "sdp": ""},
    "negative revision": {"type": "subscribe_answer", "revision": -1, "sdp": SDP},
    "publish without tracks": {"type": "publish", "sdp": SDP},
    "too many tracks": {"type": "publish", "sdp": SDP, "tracks": [{"mid": str(i), "source": "mic"} for i in range(9)]},
    "mid too long": {"type": "publish", "sdp": SDP, "tracks": [{"mid": "m" * 17, "source": "mic"}]},
    "empty mid": {"type": "publish", "sdp": SDP, "tracks": [{"mid": "", "source": "mic"}]},
    "unknown source": {"type": "unpublish", "source": "window"},
    "muted missing": {"type": "set_muted", "source": "mic"},
    "muted not a boolean": {"type": "set_muted", "source": "mic", "muted": 2},
}


@pytest.mark.parametrize("raw", INVALID.values(), ids=INVALID.keys())
def test_client_messages_rejected(raw: Any) -> None:
    with pytest.raises(ValidationError):
        p.ClientMessageAdapter.validate_python(raw)


def test_sdp_at_the_limit_is_accepted() -> None:
    raw = {"type": "subscribe_answer", "revision": 3, "sdp": "x" * p.MAX_SDP_LENGTH}
    assert isinstance(p.ClientMessageAdapter.validate_python(raw), p.SubscribeAnswer)


@pytest.mark.parametrize("version", ["1", True, 1.0])
def test_version_must_be_a_json_integer(version: Any) -> None:
    with pytest.raises(ValidationError):
        p.ClientMessageAdapter.validate_python({"type": "hello", "version": version, "token": "t"})


def test_messages_are_immutable() -> None:
    message = p.ClientMessageAdapter.validate_python({"type": "set_muted", "source": "mic", "muted": False})
    with pytest.raises(ValidationError):
        message.muted = True  # type: ignore[misc]


# ---------------------------------------------------------------- server -> client

ME = p.ParticipantInfo(id="seat-1", name="Anne", role="chair", connected=True,
                       sources=[p.SourceState(source="mic", muted=False), p.SourceState(source="camera", muted=True)])
SERVER_MESSAGES: list[Any] = [
    p.Welcome(you=ME, sitting=p.SittingInfo(id="demo", title="Conseil municipal"), participants=[ME],
              ice_servers=[p.IceServer(urls=["stun:stun.example.org"]),
                           p.IceServer(urls=["turn:t.example.org"], username="u", credential="c")]),
    p.ParticipantJoined(participant=ME),
    p.ParticipantUpdated(participant=ME.model_copy(update={"connected": False})),
    p.ParticipantLeft(participant_id="seat-1"),
    p.PublishAnswer(sdp=SDP),
    p.SubscribeOffer(revision=4, sdp=SDP, slots=[
        p.Slot(mid="0", kind="audio", participant_id="seat-1", source="mic"),
        p.Slot(mid="1", kind="video", participant_id=None, source=None),
    ]),
    p.ActiveSpeaker(participant_id=None),
    p.ActiveSpeaker(participant_id="seat-2"),
    p.Error(code="bad_sdp", message="no audio"),
    p.Error(code="replaced", message="elsewhere", fatal=True),
]


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=lambda m: type(m).__name__)
def test_server_messages_round_trip(message: Any) -> None:
    text = p.dump(message)
    assert isinstance(text, str)
    data = json.loads(text)
    assert data["type"] == message.type  # the discriminator is always on the wire
    back = p.ServerMessageAdapter.validate_json(text)
    assert type(back) is type(message) and back == message


def test_welcome_carries_protocol_version() -> None:
    data = json.loads(p.dump(SERVER_MESSAGES[0]))
    assert data["version"] == p.PROTOCOL_VERSION
    assert data["ice_servers"][0] == {"urls": ["stun:stun.example.org"], "username": None, "credential": None}


def test_error_code_must_be_known() -> None:
    with pytest.raises(ValidationError):
        p.Error(code="oops", message="x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        p.ServerMessageAdapter.validate_python({"type": "error", "code": "oops", "message": "x"})


def test_server_adapter_rejects_client_types() -> None:
    with pytest.raises(ValidationError):
        p.ServerMessageAdapter.validate_python({"type": "leave"})
