"""The load generator's text answers to re-offers: aiortc, as the server, must take them as its own."""

from __future__ import annotations

from aiortc import RTCPeerConnection, RTCSessionDescription

from bench.synthetic_answer import sections, text_answer
from sfu import aiortc_glue as glue


async def test_a_text_answer_to_a_re_offer_is_accepted_like_aiortcs_own() -> None:
    glue.install()
    server, member = RTCPeerConnection(), RTCPeerConnection()
    try:
        for kind in ("audio", "video"):
            glue.park_sender(server.addTransceiver(kind, direction="sendonly"))
        await server.setLocalDescription(await server.createOffer())
        await member.setRemoteDescription(server.localDescription)
        await member.setLocalDescription(await member.createAnswer())
        first_answer = member.localDescription.sdp
        await server.setRemoteDescription(RTCSessionDescription(first_answer, "answer"))

        for kind in ("audio", "video"):  # a member joined: two more m-lines
            glue.park_sender(server.addTransceiver(kind, direction="sendonly"))
        server.getTransceivers()[1].direction = "inactive"  # a camera held back
        await server.setLocalDescription(await server.createOffer())
        offer = server.localDescription.sdp
        answer = text_answer(offer, first_answer, "stream", version=1)
        assert answer is not None
        await server.setRemoteDescription(RTCSessionDescription(answer, "answer"))  # raises if aiortc disagrees

        _, media = sections(answer)
        assert [m[0].split(" ")[0] for m in media] == ["m=audio", "m=video", "m=audio", "m=video"]
        assert [next(x for x in m if x in ("a=recvonly", "a=inactive")) for m in media] == [
            "a=recvonly", "a=inactive", "a=recvonly", "a=recvonly"
        ]  # fmt: skip
        ufrag = next(x for x in sections(first_answer)[1][0] if x.startswith("a=ice-ufrag:"))
        assert all(ufrag in m for m in media)  # the same ICE and DTLS as the first answer
        assert "a=group:BUNDLE 0 1 2 3" in answer
        assert [t.currentDirection for t in server.getTransceivers()] == [
            "sendonly",
            "inactive",
            "sendonly",
            "sendonly",
        ]
    finally:
        await server.close()
        await member.close()


def test_no_text_answer_without_a_first_answer_that_has_ice_credentials() -> None:
    assert text_answer("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n", "v=0\r\n", "s", 1) is None
