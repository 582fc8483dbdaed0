"""Every touch of aiortc's and aioice's private internals lives in this package.

aiortc keeps handling SDP, ICE, DTLS and SRTP keying; the SFU takes over the media:
it taps decrypted RTP/RTCP on each DTLS transport, parks the senders of
subscribing connections (they never encode anything), and sends rewritten
packets itself. The names used here are private, so the versions are pinned in
``pyproject.toml`` and :func:`check_private_hooks` verifies them at start-up.

The rest of the SFU imports this package only (``from sfu import aiortc_glue``), never its modules:

* :mod:`.dtls_tap` — the tapped DTLS transport, :func:`install`, the start-up check;
* :mod:`.transceivers` — negotiated codecs and extensions, slimmed receivers, parked senders;
* :mod:`.rtcp_hooks` — subscribers' RTCP routed to the SFU, RTCP parsing, sender-report values;
* :mod:`.srtp_sender` — the send path (SRTP protect in a scratch buffer, ``sendto`` on the pair);
* :mod:`.ice_sockets` — ICE host addresses, the media UDP port range, the shared UDP port.
"""

from __future__ import annotations

from aiortc.rtcdtlstransport import State as DtlsState

from ..sdp_lines import MediaLine, describe_sdp
from .dtls_tap import (
    PINNED_AIOICE,
    PINNED_AIORTC,
    RtcpTap,
    RtpTap,
    TappedDtlsTransport,
    check_private_hooks,
    dtls_of,
    install,
    send_rtcp,
)
from .ice_sockets import (
    allow_any_udp_port,
    restrict_host_addresses,
    restrict_udp_ports,
    share_udp_port,
    shared_udp_port,
)
from .rtcp_hooks import fir_targets, hook_sender_rtcp, is_rtcp_sr, parse_rtcp, set_sender_report
from .srtp_sender import SCRATCH_CAPACITY, SrtpSender, make_sender
from .transceivers import (
    IdleTrack,
    answer_as_sender,
    keep_codecs,
    negotiated_codecs,
    negotiated_extensions,
    park_sender,
    sender_cname,
    sender_ssrc,
    set_stream_id,
    slim_descriptions,
    slim_receiver,
    stop_receiver_decoder,
)

__all__ = [
    "PINNED_AIOICE",
    "PINNED_AIORTC",
    "SCRATCH_CAPACITY",
    "DtlsState",
    "IdleTrack",
    "MediaLine",
    "RtcpTap",
    "RtpTap",
    "SrtpSender",
    "TappedDtlsTransport",
    "allow_any_udp_port",
    "answer_as_sender",
    "check_private_hooks",
    "describe_sdp",
    "dtls_of",
    "fir_targets",
    "hook_sender_rtcp",
    "install",
    "is_rtcp_sr",
    "keep_codecs",
    "make_sender",
    "negotiated_codecs",
    "negotiated_extensions",
    "park_sender",
    "parse_rtcp",
    "restrict_host_addresses",
    "restrict_udp_ports",
    "send_rtcp",
    "sender_cname",
    "sender_ssrc",
    "set_sender_report",
    "set_stream_id",
    "share_udp_port",
    "shared_udp_port",
    "slim_descriptions",
    "slim_receiver",
    "stop_receiver_decoder",
]
