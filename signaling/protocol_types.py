"""Types shared by every part of the wire protocol."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["chair", "secretary", "councillor", "public", "technician", "chamber"]  # chamber: the room's PC
Source = Literal["mic", "camera", "screen"]
Kind = Literal["audio", "video"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
