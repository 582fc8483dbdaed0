"""Settings, from (lowest to highest priority) embedded defaults, a TOML file, and
``HEMICYCLE_*`` environment variables (nested with ``__``, e.g.
``HEMICYCLE_ICE__HOST_ADDRESSES='["192.0.2.10"]'``).

With no file and no variable the server listens on loopback only and creates a
demo sitting, so ``hemicycle serve`` works out of the box. See docs/configuration.md.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class IceServer(BaseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceSettings(BaseModel):
    host_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Addresses the SFU offers as ICE host candidates (loopback by default).",
    )
    servers: list[IceServer] = Field(default_factory=list, description="STUN/TURN servers given to browsers.")
    udp_port_min: int | None = Field(None, description="Lowest UDP port for media (with udp_port_max).")
    udp_port_max: int | None = Field(None, description="Highest UDP port for media; unset: any free port.")
    udp_port: int | None = Field(
        None, description="One UDP port shared by every peer connection's media (excludes udp_port_min/max)."
    )
    announced_address: str | None = Field(
        None, description="Public address written in the SDP instead of the bound one (1:1 NAT, same ports)."
    )

    @field_validator("announced_address")
    @classmethod
    def _ip_literal(cls, address: str | None) -> str | None:
        if address is None:
            return None
        try:
            return str(ipaddress.ip_address(address))
        except ValueError:
            raise ValueError(f"ice.announced_address must be an IPv4 or IPv6 address, not {address!r}") from None

    @model_validator(mode="after")
    def _consistent_ports_and_addresses(self) -> IceSettings:
        ranged = (self.udp_port_min, self.udp_port_max)
        if self.udp_port is not None and ranged != (None, None):
            raise ValueError("ice.udp_port (one shared port) excludes ice.udp_port_min/udp_port_max (a range)")
        if (ranged[0] is None) != (ranged[1] is None):
            raise ValueError("ice.udp_port_min and ice.udp_port_max go together")
        if ranged[0] is not None and ranged[1] is not None and not 1024 <= ranged[0] <= ranged[1] <= 65535:
            raise ValueError("ice.udp_port_min..udp_port_max must be within 1024-65535, min <= max")
        if self.udp_port is not None and not 1024 <= self.udp_port <= 65535:
            raise ValueError("ice.udp_port must be within 1024-65535")
        if self.announced_address is not None:
            version = ipaddress.ip_address(self.announced_address).version
            same_family = [a for a in self.host_addresses if self._ip_version(a) == version]
            if len(same_family) != 1:
                raise ValueError(
                    f"ice.announced_address {self.announced_address} stands for one bound address: "
                    f"ice.host_addresses must hold exactly one IPv{version} address, not {same_family}"
                )
        return self

    @staticmethod
    def _ip_version(address: str) -> int | None:
        try:
            return ipaddress.ip_address(address).version
        except ValueError:
            return None


class TurnSettings(BaseModel):
    """A TURN server sharing a secret with Hemicycle (coturn ``use-auth-secret``): see docs/turn.md."""

    urls: list[str] = Field(default_factory=list, description="turn:/turns: URLs given to browsers with a credential.")
    secret: SecretStr | None = Field(None, description="coturn's static-auth-secret (better: HEMICYCLE_TURN__SECRET).")
    ttl: int = Field(6 * 3600, gt=0, description="Seconds a minted TURN credential stays valid.")

    @field_validator("urls")
    @classmethod
    def _turn_scheme(cls, urls: list[str]) -> list[str]:
        bad = [u for u in urls if not u.startswith(("turn:", "turns:"))]
        if bad:
            raise ValueError(f"TURN URLs start with turn: or turns: (STUN goes in ice.servers): {bad}")
        return urls


class MediaSettings(BaseModel):
    camera_bitrate: int = Field(500_000, description="Cap fed back (REMB) to each camera publisher, bit/s.")
    screen_bitrate: int = Field(1_500_000, description="Cap fed back to each screen-share publisher, bit/s.")
    rtcp_silence_timeout: float = Field(8.0, description="Seconds without RTP/RTCP before a publisher is gone.")
    max_videos: int = Field(
        9, ge=0, le=100, description="Videos forwarded to each member at most (screen shares, the floor, the chair, "
        "the chamber and the last speakers first); members may ask fewer."
    )
    reconnect_grace: float = Field(
        20.0, description="Seconds a member whose connection dropped keeps counting as present, to come back."
    )
    opus_dtx: bool = Field(
        True, description="Ask publishing browsers for Opus DTX (usedtx=1): a silent microphone sends ~3 packets/s."
    )


class ProgrammeSettings(BaseModel):
    """The public programme: one mixed, captioned stream per sitting (sfu/programme)."""

    enabled: bool = Field(True, description="Compose the public programme (live page, WHEP, HLS, recording).")
    width: int = Field(1280, ge=160, le=1920, description="Programme video width, pixels (even).")
    height: int = Field(720, ge=90, le=1080, description="Programme video height, pixels (even).")
    fps: int = Field(30, ge=5, le=30, description="Programme frames per second.")
    video_bitrate: int = Field(1_500_000, gt=0, description="H.264 target bit rate of the programme, bit/s.")
    hls_segment_s: float = Field(2.0, ge=1.0, le=10.0, description="Seconds per HLS segment (and recording).")
    max_viewers: int = Field(200, gt=0, description="WHEP viewers at once; more are sent to HLS.")
    rtmp_url: str | None = Field(None, description="Also push the programme by RTMP (PeerTube, Owncast), e.g. "
                                 "rtmp://peertube.example/live/KEY; none: no push.")


class PublicSettings(BaseModel):
    frame_ancestors: list[str] = Field(
        default_factory=list,
        description="Origins allowed to embed the public pages (/live, /replay) in an <iframe>, "
        "e.g. https://www.mairie.example; empty: none.",
    )


class RecordingSettings(BaseModel):
    enabled: bool = Field(True, description="Record the programme of every public sitting (HLS segments).")
    retention_days: float | None = Field(
        None, gt=0, description="Delete recordings older than this many days; none: keep them."
    )


class TlsSettings(BaseModel):
    """HTTPS served by Hemicycle itself (signaling/tls.py, docs/deployment.md)."""

    certificate: Path | None = Field(None, description="PEM certificate chain; with private_key.")
    private_key: Path | None = Field(None, description="PEM private key of that certificate.")
    self_signed: bool = Field(False, description="Generate (once, into data_dir) and serve a self-signed certificate.")

    @property
    def enabled(self) -> bool:
        return self.self_signed or self.certificate is not None


class LimitSettings(BaseModel):
    max_message_bytes: int = Field(
        1_048_576, description="Largest WebSocket message accepted (an SDP answer grows ~1 KB per member)."
    )
    send_queue: int = Field(256, description="Messages queued to a slow client before it is dropped.")
    heartbeat: float = Field(5.0, description="WebSocket ping interval, seconds; a client missing a pong is dropped.")
    messages_per_second: float = Field(20.0, gt=0, description="Sustained messages per connection (token bucket).")
    message_burst: int = Field(40, gt=0, description="Messages a connection may send at once above that rate.")
    max_refused_messages: int = Field(200, gt=0, description="Refused messages before the connection is closed.")
    max_participants: int = Field(200, gt=0, description="People connected to one sitting at once.")
    max_sittings: int = Field(20, gt=0, description="Sittings with someone connected, at once, on this server.")
    max_remote_candidates: int = Field(20, gt=0, description="Distinct ICE candidates in one offer or answer.")


class AgendaItemSettings(BaseModel):
    id: str
    title: str
    kind: Literal["ordinary", "budget_primitif", "election", "designation"] = "ordinary"
    time_limit_s: int | None = None
    no_remote_vote: bool = False
    documents: list[Path] = Field(
        default_factory=list, description="Reports attached to the convocation (relative: to the settings file)."
    )


class MemberSettings(BaseModel):
    id: str
    name: str
    group: str | None = None
    email: str | None = Field(None, description="Where the convocation is sent; none: convoked on paper.")


class SittingSettings(BaseModel):
    id: str
    title: str
    regime: str = Field("commune", description="Legal regime preset (see docs/sittings.md).")
    mode: Literal["chamber", "hybrid", "remote"] = "chamber"
    agenda: list[AgendaItemSettings] = Field(default_factory=list)
    members: list[MemberSettings] = Field(
        default_factory=list, description="The roster; empty: members are enrolled as they join."
    )
    starts_at: datetime | None = Field(None, description="Date and time of the sitting (no offset: `timezone`).")
    place: str | None = Field(None, description="Where the council meets, e.g. « salle du conseil, mairie ».")
    chair: str | None = Field(None, description="Member id of the chair: invited as chair, named in the minutes.")


class SmtpSettings(BaseModel):
    host: str = Field(description="Outgoing mail server.")
    port: int = Field(587, description="587 (submission, STARTTLS), 465 (implicit TLS) or 25.")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS (certificate checked).")
    implicit_tls: bool = Field(False, description="TLS from the first byte (port 465); excludes starttls.")
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(description="From: address, e.g. « Mairie de X <conseil@mairie.example> ».")
    timeout: float = Field(30.0, description="Seconds before a silent server is given up.")


class MetricsSettings(BaseModel):
    token: SecretStr | None = Field(
        None, description="Bearer token that opens /metrics to non-loopback clients (better: HEMICYCLE_METRICS__TOKEN)."
    )


class ServerSettings(BaseModel):
    workers: int | Literal["auto"] = Field(
        1, description="Processes holding the sittings: 1 (one process, as before), N, or 0/auto (one per CPU core)."
    )

    @field_validator("workers")
    @classmethod
    def _non_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("server.workers must be 0 or 'auto' (one per core), 1, or more")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEMICYCLE_", env_nested_delimiter="__", extra="forbid")

    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8080, description="HTTP port.")
    public_url: str | None = Field(None, description="Base URL used in invitation links; default http://host:port.")
    data_dir: Path = Field(Path("var"), description="Where the server keeps its secret key and data.")
    secret_file: Path | None = Field(None, description="Token signing key; default DATA_DIR/secret.key.")
    token_lifetime_hours: float = Field(24.0 * 30, description="Validity of minted invitations.")
    demo: bool = Field(True, description="Create a demo sitting and print ready-to-click links.")
    sittings: list[SittingSettings] = Field(default_factory=lambda: [_demo_sitting()])
    ice: IceSettings = Field(default_factory=IceSettings)
    tls: TlsSettings = Field(default_factory=lambda: TlsSettings())
    allowed_origins: list[str] = Field(
        default_factory=list, description="Web origins besides the server's own allowed to open the WebSocket."
    )
    turn: TurnSettings = Field(default_factory=TurnSettings)
    media: MediaSettings = Field(default_factory=lambda: MediaSettings())
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    metrics: MetricsSettings = Field(default_factory=lambda: MetricsSettings())
    programme: ProgrammeSettings = Field(default_factory=lambda: ProgrammeSettings())
    public: PublicSettings = Field(default_factory=PublicSettings)
    recording: RecordingSettings = Field(default_factory=lambda: RecordingSettings())
    smtp: SmtpSettings | None = Field(None, description="Mail server for convocations; none: no sending.")
    timezone: str = Field("Europe/Paris", description="The council's time zone (convocations, minutes).")
    server: ServerSettings = Field(default_factory=lambda: ServerSettings())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls.enabled else "http"
        return (self.public_url or f"{scheme}://{self.host}:{self.port}").rstrip("/")

    @property
    def recordings_dir(self) -> Path:
        """DATA_DIR/recordings/<sitting>/<run>/: programme.m3u8, segments, recording.json."""
        return self.data_dir / "recordings"

    @property
    def secret_path(self) -> Path:
        return self.secret_file or self.data_dir / "secret.key"


def _demo_sitting() -> SittingSettings:
    return SittingSettings(
        id="demo",
        title="Séance de démonstration",
        regime="intercommunal",
        mode="remote",
        agenda=[
            AgendaItemSettings(id="1", title="Approbation du procès-verbal de la séance précédente", time_limit_s=180),
            AgendaItemSettings(id="2", title="Subvention à l'association des parents d'élèves", time_limit_s=300),
            AgendaItemSettings(id="3", title="Questions diverses", time_limit_s=300),
        ],
    )


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the TOML file ``path`` (or ``$HEMICYCLE_CONFIG``), then env, then overrides.

    Environment variables win over the file; explicit ``overrides`` (command-line
    options) win over both.
    """
    values: dict[str, Any] = {}
    path = path or os.environ.get("HEMICYCLE_CONFIG")
    if path:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    env_only = Settings.model_validate({})  # defaults + environment
    env_set = env_only.model_dump(exclude_unset=True)  # only what the environment set, nested
    merged = {**_deep_merge(values, env_set), **{k: v for k, v in overrides.items() if v is not None}}
    return Settings(**merged)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, table by table: HEMICYCLE_TURN__SECRET keeps the file's [turn] urls."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
