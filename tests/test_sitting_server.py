"""The sitting's rules through the real server: enforced mute, votes, and a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from signaling.app import HUB
from tests.commands import command, refused
from tests.peers import Peer
from tests.servers import start_app
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio


def last(peer: Peer, kind: str) -> dict[str, Any]:
    return next(m for m in reversed(peer.messages) if m["type"] == kind)


async def test_a_client_ignoring_its_mute_is_not_heard(server) -> None:  # type: ignore[no-untyped-def]
    chair = Peer(server.base_url, server.token("Maire", role="chair"), "red", 440)
    loud = Peer(server.base_url, server.token("Bavard"), "green", 660)
    listener = Peer(server.base_url, server.token("Auditrice"), "blue", 880)
    try:
        for peer in (chair, loud, listener):
            await peer.join()
            await peer.publish(video=False)
        await wait_for(
            lambda: (
                listener.received.get(loud.me or "") is not None and listener.received[loud.me or ""].audio_frames > 50
            )
        )
        mic = next(
            p for p in server.router.producers.values() if server.router.owners[p.id] == loud.me and p.kind == "audio"
        )
        # the chair mutes: the browser is never asked; it keeps sending (aiortc peer ignores it)
        await command(chair, {"type": "mute", "participant_id": loud.me, "source": "mic"}, lambda: mic.paused)
        sent_before = {c: c.packets_out for c in mic.consumers}
        incoming_before = mic.packets_in
        await asyncio.sleep(0.5)  # frames already in flight or in the jitter buffer
        heard_before = listener.received[loud.me or ""].audio_frames
        await asyncio.sleep(2)
        assert mic.packets_in > incoming_before + 20  # it really keeps sending
        assert all(c.packets_out == sent_before[c] for c in mic.consumers)  # nobody receives it
        assert listener.received[loud.me or ""].audio_frames == heard_before
        assert server.hub.sittings["demo"].router.speaker_observer.speaker is not mic
        state = last(listener, "participant_updated")
        assert state["participant"]["sources"][0] == {"source": "mic", "muted": True}
        # a member may not lift the chair's mute once the chair forbids it
        sitting = server.hub.sittings["demo"]
        await command(
            chair, {"type": "set_self_unmute", "allowed": False}, lambda: not sitting.state.self_unmute_allowed
        )
        error = await refused(loud, {"type": "set_muted", "source": "mic", "muted": False})
        assert error["code"] == "forbidden" and mic.paused
        # the chair gives the floor: unmuted
        await command(chair, {"type": "give_floor", "participant_id": loud.me}, lambda: not mic.paused)
    finally:
        for peer in (chair, loud, listener):
            await peer.close()


async def test_councillor_cannot_run_the_sitting_and_public_cannot_vote(server) -> None:  # type: ignore[no-untyped-def]
    member = Peer(server.base_url, server.token("Élu"), "red", 440)
    viewer = Peer(server.base_url, server.token("Citoyen", role="public"), "red", 440)
    try:
        await member.join()
        await viewer.join()
        for message in ({"type": "mute", "participant_id": viewer.me}, {"type": "open_vote", "question": "?"}):
            assert (await refused(member, message))["code"] == "forbidden"
        assert (await refused(viewer, {"type": "raise_hand"}))["code"] == "forbidden"
        journal = server.hub.sittings["demo"].journal
        assert not [e for e in journal.entries("demo") if e.type in ("muted", "vote_opened", "hand_raised")]
    finally:
        await member.close()
        await viewer.close()


async def test_a_restart_mid_sitting_keeps_roll_proxies_votes_and_journal(tmp_path: Path) -> None:
    settings = Settings(port=0, data_dir=tmp_path, demo=False)
    runner, base = await start_app(settings)
    hub = runner.app[HUB]
    names = ["Maire", "Adjointe", "Conseiller", "Conseillère"]
    tokens = [hub.signer.mint("demo", n, "chair" if i == 0 else "councillor", 3600) for i, n in enumerate(names)]
    peers = [Peer(base, t) for t in tokens]
    for peer in peers:
        await peer.join()
    chair, a, b, c = peers
    state = hub.sittings["demo"].state
    await command(c, {"type": "give_proxy", "holder_id": b.me}, lambda: state.proxies == {c.me: b.me})
    await command(chair, {"type": "set_item", "item_id": "2"}, lambda: state.current_item == "2")
    await command(
        chair, {"type": "open_vote", "question": "Adopter la subvention ?"}, lambda: state.open_vote is not None
    )
    ballots = lambda: state.open_vote.ballots if state.open_vote else {}  # noqa: E731
    await command(a, {"type": "cast_vote", "choice": "for"}, lambda: a.me in ballots())
    await command(b, {"type": "cast_vote", "choice": "against"}, lambda: b.me in ballots())
    before = [(e.seq, e.type, e.hash) for e in hub.sittings["demo"].journal.entries("demo")]
    for peer in peers:
        await peer.close()
    await runner.cleanup()

    runner, base = await start_app(settings)  # same data directory: a restart
    hub = runner.app[HUB]
    state = hub.sittings["demo"].state
    assert state.proxies == {c.me: b.me}
    vote = state.open_vote
    assert vote is not None and {m: x.choice for m, x in vote.ballots.items()} == {a.me: "for", b.me: "against"}
    assert state.connected == set()  # connections did not survive, and the journal says so
    after = hub.sittings["demo"].journal.entries("demo")
    assert [(e.seq, e.type, e.hash) for e in after[: len(before)]] == before
    # the vote goes on after the restart: b votes for c by proxy, the chair closes it
    peers = [Peer(base, t) for t in tokens]
    for peer in peers[:3]:
        await peer.join()
    await command(
        peers[2], {"type": "cast_vote", "choice": "against", "on_behalf_of": c.me}, lambda: c.me in vote.ballots
    )
    await command(peers[0], {"type": "cast_vote", "choice": "for"}, lambda: peers[0].me in vote.ballots)
    await command(peers[0], {"type": "close_vote"}, lambda: state.votes[-1].result is not None)
    result = state.votes[-1].result
    assert result is not None and (result["votes_for"], result["votes_against"]) == (2, 2)
    assert result["adopted"] is True and result["casting_vote"] is True  # the chair's vote prevails
    for peer in peers[:3]:
        await peer.close()
    await runner.cleanup()


async def test_a_closed_session_cuts_the_public_off_and_reopening_restores_it(server) -> None:  # type: ignore[no-untyped-def]
    chair = Peer(server.base_url, server.token("Maire", role="chair"), "red", 440)
    viewer = Peer(server.base_url, server.token("Citoyenne", role="public"), "red", 440)
    late_viewer = Peer(server.base_url, server.token("Retardataire", role="public"), "red", 440)
    try:
        await chair.join()
        await chair.publish(video=False)
        await viewer.join()
        await wait_for(
            lambda: (
                viewer.received.get(chair.me or "") is not None and viewer.received[chair.me or ""].audio_frames > 20
            )
        )
        sitting = server.hub.sittings["demo"]
        await command(chair, {"type": "closed_session", "closed": True}, lambda: sitting.state.closed_session)
        await asyncio.sleep(0.5)
        heard = viewer.received[chair.me or ""].audio_frames
        await late_viewer.join()  # arrives during the closed session
        await asyncio.sleep(2)
        assert viewer.received[chair.me or ""].audio_frames == heard
        assert late_viewer.received.get(chair.me or "") is None
        assert last(viewer, "sitting_state")["closed_session"] is True
        await command(chair, {"type": "closed_session", "closed": False}, lambda: not sitting.state.closed_session)
        await wait_for(lambda: viewer.received[chair.me or ""].audio_frames > heard + 20)
        await wait_for(lambda: late_viewer.received.get(chair.me or "") is not None)
        kinds = [e.type for e in server.hub.sittings["demo"].journal.entries("demo")]
        assert kinds.count("closed_session") == 2
    finally:
        for peer in (chair, viewer, late_viewer):
            await peer.close()


async def test_active_speaker_follows_the_voice_and_a_muted_member_is_never_it(server) -> None:  # type: ignore[no-untyped-def]
    chair = Peer(server.base_url, server.token("Maire", role="chair"), "red", 0.0)  # silent
    speaker = Peer(server.base_url, server.token("Oratrice"), "green", 660)
    try:
        for peer in (chair, speaker):
            await peer.join()
            await peer.publish(video=False)
        await wait_for(
            lambda: any(m["type"] == "active_speaker" and m["participant_id"] == speaker.me for m in chair.messages)
        )
        assert not any(m["type"] == "active_speaker" and m["participant_id"] == chair.me for m in speaker.messages)
        mic = next(
            p
            for p in server.router.producers.values()
            if server.router.owners[p.id] == speaker.me and p.kind == "audio"
        )
        await command(chair, {"type": "mute", "participant_id": speaker.me}, lambda: mic.paused)
        await wait_for(lambda: last(chair, "active_speaker")["participant_id"] is None, timeout=5)
        await asyncio.sleep(1.5)
        assert last(chair, "active_speaker")["participant_id"] is None  # still talking, but muted
    finally:
        for peer in (chair, speaker):
            await peer.close()


async def test_a_member_back_within_the_grace_period_never_left_even_if_the_sitting_is_locked(server) -> None:  # type: ignore[no-untyped-def]
    chair = Peer(server.base_url, server.token("Maire", role="chair"))
    token = server.token("Élu")
    member = Peer(server.base_url, token)
    await chair.join()
    await member.join()
    state = server.hub.sittings["demo"].state
    await command(member, {"type": "raise_hand"}, lambda: [h.seat for h in state.hands] == [member.me])
    await command(chair, {"type": "lock", "locked": True}, lambda: state.locked)
    seat = member.me
    await member.close()  # the network drops: no leave message
    await asyncio.sleep(0.5)
    back = Peer(server.base_url, token)  # the client reconnects with the same link
    welcome = await back.join()
    assert welcome["type"] == "welcome" and back.me == seat  # not sent to the waiting room
    await asyncio.sleep(0.3)
    sitting = server.hub.sittings["demo"]
    kinds = [e.type for e in sitting.journal.entries("demo")]
    assert "connection_lost" not in kinds and "quorum_lost" not in kinds
    assert [h.seat for h in sitting.state.hands] == [seat]
    await back.send({"type": "leave"})  # a clean leave counts at once
    await wait_for(lambda: "member_left" in [e.type for e in sitting.journal.entries("demo")], timeout=3)
    await back.close()
    await chair.close()
