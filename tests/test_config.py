"""Settings: embedded defaults, TOML file, environment, and their documentation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from config import Settings, load_settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_defaults_listen_on_loopback_only() -> None:
    settings = load_settings()
    assert settings.host == "127.0.0.1"
    assert settings.ice.host_addresses == ["127.0.0.1"]
    assert settings.ice.servers == []
    assert settings.sittings[0].id == "demo"


def test_file_then_environment_then_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hemicycle.toml"
    path.write_text('port = 9001\nhost = "0.0.0.0"\n[media]\ncamera_bitrate = 700000\n')
    monkeypatch.setenv("HEMICYCLE_HOST", "127.0.0.2")
    monkeypatch.setenv("HEMICYCLE_ICE__HOST_ADDRESSES", '["192.0.2.10"]')
    settings = load_settings(path, port=9002)
    assert settings.port == 9002  # option beats file
    assert settings.host == "127.0.0.2"  # environment beats file
    assert settings.media.camera_bitrate == 700000  # file beats default
    assert settings.ice.host_addresses == ["192.0.2.10"]


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("prot = 9001\n")
    with pytest.raises(ValidationError):
        load_settings(path)


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and name != "sittings":
            keys += _keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_setting_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [key for key in _keys(Settings) if f"`{key}`" not in text]
    assert not missing


def test_the_documented_example_is_valid() -> None:
    import re
    import tomllib

    example = re.search(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert example is not None
    settings = Settings(**tomllib.loads(example.group(1)))
    assert settings.sittings[0].regime == "intercommunal"
