"""Hypothesis strategies for hostile input: generated and mutated protocol messages, and SDP.

Strategies draw *recipes*, not final bytes: tokens, seat ids, revisions, SDP
templates and huge strings are :class:`Marker` objects that the harness resolves
at send time, in the server's event loop (a token must be minted by the server's
signer, a revision is the one the attacker was last offered, an SDP template is a
real aiortc offer or answer). This keeps hypothesis' choice sequences small and
the examples reproducible with ``derandomize=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from signaling.protocol import ClientMessageAdapter
from signaling.tokens import ROLES

SCHEMA = ClientMessageAdapter.json_schema()
DEFS: dict[str, Any] = SCHEMA["$defs"]
MESSAGE_TYPES: dict[str, str] = {
    tag: ref.rsplit("/", 1)[1] for tag, ref in SCHEMA["discriminator"]["mapping"].items()
}
ID_FIELDS = {"participant_id", "item_id", "member_id", "holder_id", "giver_id", "on_behalf_of"}
TARGETS = ("prehello", *ROLES)


# ---------------------------------------------------------------- markers, resolved at send time


@dataclass(frozen=True)
class Marker:
    pass


@dataclass(frozen=True)
class Tok(Marker):
    """An invitation: ``valid`` for ``role``, or ``expired``, ``other_sitting``, ``tampered``, ``huge``."""

    role: str
    variant: str = "valid"


@dataclass(frozen=True)
class Ident(Marker):
    """The ``k``-th id the harness knows (attacker seats, agenda items), never a witness's."""

    k: int


@dataclass(frozen=True)
class Rev(Marker):
    """The revision of the last subscribe_offer this attacker received, plus ``delta``."""

    delta: int = 0


@dataclass(frozen=True)
class Sdp(Marker):
    """A real SDP (``publish``: an aiortc offer template; ``answer``: an aiortc answer to the
    attacker's last subscribe_offer), mutated by ``ops`` (see :func:`tests.fuzz.sdp.mutate`)."""

    kind: str
    template: int
    ops: tuple[tuple[Any, ...], ...] = ()


@dataclass(frozen=True)
class Huge(Marker):
    """A string of ``n`` times ``char``."""

    n: int
    char: str = "x"


# ---------------------------------------------------------------- structurally valid messages


def _from_schema(schema: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """A strategy for values valid under a (pydantic-generated) JSON schema fragment."""
    if "$ref" in schema:
        return _object(DEFS[schema["$ref"].rsplit("/", 1)[1]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([_from_schema(s, name) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = schema.get("minimum")
        plain = st.integers(min_value=low, max_value=2**70) if low is not None else st.integers(-(2**70), 2**70)
        if name == "revision":
            return st.one_of(st.builds(Rev, st.integers(-1, 1)), plain, st.just(0))
        if name == "version":
            return st.one_of(st.just(1), plain)
        return plain
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 200)
        text = st.text(min_size=low, max_size=min(high, 24))
        if name == "token":
            return st.one_of(
                st.builds(Tok, st.sampled_from(ROLES)),
                st.builds(Tok, st.sampled_from(ROLES), st.sampled_from(["expired", "other_sitting", "tampered"])),
                text,
            )
        if name == "sdp":
            return st.one_of(st.builds(Sdp, st.sampled_from(["publish", "answer"]), st.integers(0, 7)), text)
        if name in ID_FIELDS:
            return st.one_of(st.builds(Ident, st.integers(0, 63)), text)
        if name == "mid":
            return st.one_of(st.sampled_from(["0", "1", "2", "3"]), text)
        if high > 24:  # occasionally as long as allowed
            return st.one_of(text, st.builds(Huge, st.just(high), st.sampled_from("xé€😀")))
        return text
    if kind == "array":
        item = _from_schema(schema["items"])
        return st.lists(item, max_size=schema.get("maxItems", 4))
    if kind == "object":
        return _object(schema)
    raise NotImplementedError(schema)


def _object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    required = set(schema.get("required", ()))
    props = schema.get("properties", {})
    return st.fixed_dictionaries(
        {k: _from_schema(v, k) for k, v in props.items() if k in required},
        optional={k: _from_schema(v, k) for k, v in props.items() if k not in required},
    )


MESSAGE_STRATEGIES = {tag: _object(DEFS[model]) for tag, model in MESSAGE_TYPES.items()}


def valid_message(tags: list[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Any client message type (every tag the discriminated union knows), valid by the schema."""
    return st.sampled_from(sorted(tags or MESSAGE_STRATEGIES)).flatmap(lambda tag: MESSAGE_STRATEGIES[tag])


# ---------------------------------------------------------------- frames and mutations


@dataclass(frozen=True)
class Frame:
    """One WebSocket frame: ``payload`` (with markers) as JSON text, then a text-level mutation."""

    payload: Any
    raw: tuple[Any, ...] | None = None  # (op, *args), see harness.apply_raw
    binary: bool = False
    ascii: bool = True
    origin: str = "valid"  # valid | mutated | sdp

JUNK_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.builds(Huge, st.integers(1000, 70_000), st.sampled_from("x\x00é😀")),
)
JUNK = st.recursive(
    JUNK_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
WEIRD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "\ud800", "\udfff\ud800", "a\x00b", "\u202eevil", "\ufeff", "😀" * 20, "e\u0301" * 30,
        "\U0010ffff", "\\", '"', "<script>", "' OR 1=1 --", "../../etc/passwd", "%s%n", "\r\n\r\n",
    ]),
)


@st.composite
def mutated_frame(draw: st.DrawFn) -> Frame:
    message = dict(draw(valid_message()))
    keys = sorted(message)
    op = draw(st.sampled_from([
        "delete", "wrong_type", "huge", "unicode", "nested", "extra", "type_twist", "dup_key", "truncate",
        "not_json", "binary", "top_level", "deep_nesting", "whitespace", "number_edge",
    ]))
    key = draw(st.sampled_from(keys))
    if op == "delete":
        message.pop(key)
    elif op == "wrong_type":
        message[key] = draw(JUNK_SCALARS)
    elif op == "huge":
        message[key] = Huge(draw(st.sampled_from([4097, 65_000, 65_537, 70_000, 200_000])), draw(st.sampled_from("xé😀")))
    elif op == "unicode":
        message[key] = draw(WEIRD_TEXT)
    elif op == "nested":
        message[key] = draw(JUNK)
    elif op == "extra":
        message[draw(st.text(min_size=1, max_size=10))] = draw(JUNK)
    elif op == "type_twist":
        message["type"] = draw(st.sampled_from([
            message["type"].upper(), " " + message["type"], message["type"] + "\x00", "", None, 1, ["hello"],
            {"type": message["type"]}, message["type"].replace("_", "-"),
        ]))
    elif op == "number_edge":
        message[key] = draw(st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**400, 1.0, -0.0, 1e308, True]))
    raw: tuple[Any, ...] | None = None
    binary = False
    if op == "dup_key":
        raw = ("dup_key", key, draw(JUNK_SCALARS.filter(lambda v: not isinstance(v, Huge))))
    elif op == "truncate":
        raw = ("truncate", draw(st.floats(0, 1)))
    elif op == "not_json":
        raw = ("replace", draw(st.one_of(st.text(max_size=60), st.sampled_from([
            "", " ", "null", "NaN", "[]", "{", "}", "{{}}", "\ufeff{}", "{'type': 'hello'}", "1" * 5000,
            '{"type": "hello", "version": 1e999}', '{"type": "leave"} {"type": "leave"}', "\x00" * 10,
        ]))))
    elif op == "binary":
        binary = True
        raw = draw(st.one_of(st.none(), st.builds(lambda b: ("bytes", b), st.binary(max_size=64))))
    elif op == "top_level":
        raw = ("replace_json", draw(st.one_of(JUNK_SCALARS.filter(lambda v: not isinstance(v, Huge)),
                                              st.lists(st.just(message), max_size=3))))
    elif op == "deep_nesting":
        raw = ("deep", key, draw(st.sampled_from([10, 100, 500, 990, 2000, 20_000])), draw(st.sampled_from("[{")))
    elif op == "whitespace":
        raw = ("whitespace", draw(st.sampled_from([" ", "\n", "\t", "\r\n", "\u00a0", "\u2028"])))
    return Frame(message, raw=raw, binary=binary, ascii=draw(st.booleans()), origin="mutated")


def valid_frame() -> st.SearchStrategy[Frame]:
    return st.builds(lambda m, a: Frame(m, ascii=a), valid_message(), st.booleans())


# ---------------------------------------------------------------- SDP mutations

ATTRIBUTES = [
    "a=rtpmap:{n} opus/48000/2", "a=rtpmap:{n} VP8/90000", "a=rtpmap:{n} x", "a=rtpmap:abc opus/48000",
    "a=rtpmap:{n} rtx/90000", "a=fmtp:{n} apt={n}", "a=fmtp:{n} ;;;=;", "a=fmtp:{n} apt=abc",
    "a=ssrc:{n} cname:x", "a=ssrc:x cname:y", "a=ssrc-group:FID {n}", "a=ssrc-group:FID {n} {n} {n}",
    "a=ssrc-group:FID a b", "a=extmap:{n} urn:ietf:params:rtp-hdrext:sdes:mid", "a=extmap:x y",
    "a=extmap:{n} urn:ietf:params:rtp-hdrext:ssrc-audio-level", "a=mid:{n}", "a=mid:", "a=msid:- -",
    "a=rtcp-fb:{n} nack pli", "a=rtcp-fb:* ccm fir", "a=fingerprint:sha-256 ZZ", "a=fingerprint:md5 00",
    "a=fingerprint:", "a=setup:bogus", "a=setup:active", "a=setup:passive", "a=ice-ufrag:", "a=ice-pwd:x",
    "a=ice-lite", "a=ice-options:trickle", "a=sendrecv", "a=recvonly", "a=inactive", "a=rtcp-mux",
    "a=rtcp:{n} IN IP4 127.0.0.1", "a=group:BUNDLE {n} {n}", "a=group:BUNDLE", "a=end-of-candidates",
    "a=candidate:1 1 udp {n} 127.0.0.{b} {n} typ host", "a=candidate:1 1 udp 1 999.1.1.1 9 typ host",
    "a=candidate:1 1 udp 1 not_an_ip 9 typ host", "a=candidate:1 1 udp 1 :::: 9 typ host",
    "a=candidate:1 1 tcp 1 127.0.0.{b} {n} typ host tcptype passive", "a=candidate:1 1 udp 1 127.0.0.{b} -1 typ host",
    "a=candidate:1 1 udp 1 127.0.0.{b} 70000 typ relay raddr 0.0.0.0 rport 0", "a=candidate:x",
    "a=candidate:1 1 udp 1 0.0.0.0 9 typ host", "a=candidate:1 2 udp 1 127.0.0.{b} {n} typ srflx",
    "a=sctp-port:{n}", "a=max-message-size:{n}", "a=simulcast:send 1;2", "a=rid:1 send", "a=", "a",
    "b=AS:{n}", "c=IN IP4 127.0.0.{b}", "c=IN IP6 ::1", "c=IN IP4", "m=audio {n} UDP/TLS/RTP/SAVPF {n}",
    "m=video 0 UDP/TLS/RTP/SAVPF 96", "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=", "o=- x x IN IP4 x",
    "v=1", "s=", "t=x y", "\x00", "a=x-" + "y" * 200,
]


@st.composite
def sdp_op(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(["drop", "dup", "swap", "shuffle", "numbers", "insert", "huge_line", "crlf", "truncate"]))
    where = draw(st.integers(0, 10_000))
    if kind == "swap":
        return (kind, where, draw(st.integers(0, 10_000)))
    if kind == "shuffle":
        return (kind, draw(st.integers(0, 2**32)))
    if kind == "numbers":
        value = draw(st.sampled_from(["0", "-1", "65536", "4294967296", "99999999999999999999", "1e3", "x", ""]))
        return (kind, where, value)
    if kind == "insert":
        template = draw(st.sampled_from(ATTRIBUTES))
        return (kind, where, template, draw(st.sampled_from(["0", "96", "127", "255", "65535", "4294967295"])),
                draw(st.integers(1, 254)))
    if kind == "huge_line":
        return (kind, where, draw(st.sampled_from([1000, 20_000, 60_000])))
    if kind == "crlf":
        return (kind, draw(st.sampled_from(["\n", "\r", "\r\r\n", ""])))
    if kind == "truncate":
        return (kind, draw(st.floats(0, 1)))
    return (kind, where)


@st.composite
def sdp_frame(draw: st.DrawFn) -> Frame:
    kind = draw(st.sampled_from(["publish", "answer"]))
    ops = tuple(draw(st.lists(sdp_op(), min_size=1, max_size=5)))
    sdp = Sdp(kind, draw(st.integers(0, 7)), ops)
    if kind == "publish":
        tracks = draw(st.one_of(
            st.just([{"mid": "0", "source": "mic"}, {"mid": "1", "source": "camera"}]),
            st.lists(st.fixed_dictionaries({"mid": st.sampled_from(["0", "1", "2", "x"]),
                                            "source": st.sampled_from(["mic", "camera", "screen"])}), max_size=3),
        ))
        return Frame({"type": "publish", "sdp": sdp, "tracks": tracks}, origin="sdp")
    revision = draw(st.one_of(st.just(Rev(0)), st.builds(Rev, st.integers(-1, 1))))
    return Frame({"type": "subscribe_answer", "revision": revision, "sdp": sdp}, origin="sdp")


@dataclass(frozen=True)
class Batch:
    """Frames sent in order on one connection: a fresh one (``prehello``), or one joined with ``role``."""

    target: str
    frames: tuple[Frame, ...]


def batches(frame: st.SearchStrategy[Frame], min_size: int, max_size: int,
            targets: tuple[str, ...] = TARGETS) -> st.SearchStrategy[Batch]:
    return st.builds(
        lambda t, fs: Batch(t, tuple(fs)), st.sampled_from(targets), st.lists(frame, min_size=min_size, max_size=max_size)
    )
