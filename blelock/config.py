"""Settings: a TOML file, overlaid by ``BLELOCK_*`` environment variables, validated by pydantic.

Where things live (platformdirs): ``config.toml`` in the user config dir; the data dir holds the
store (later issues). ``BLELOCK_CONFIG`` names another file.

Secrets (API keys) are :class:`pydantic.SecretStr`: they print as ``**********`` and reach the
wire only through ``get_secret_value()`` at the one place that sends them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from blelock.errors import ConfigError

__all__ = ["APP_NAME", "Settings", "Timeouts", "default_config_path", "load_settings"]

APP_NAME = "blelock"
_KEY_TOKEN = re.compile(r"[\x21-\x7e]+")
ENV_PREFIX = "BLELOCK_"
_MIN_TOKEN_LENGTH = 16
"""A guessable API token would open every lock in the kiosk."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Every wait that touches a radio or a network, in seconds, with why it is that long."""

    scan: float = 10.0
    """Locks advertise every 0.1-1 s while awake; 10 s covers a sleepy lock woken by a touch."""
    connect: float = 15.0
    """bleak-retry-connector's attempts share this; BlueZ itself gives up after ~20 s."""
    connect_attempts: int = 3
    """Transient failures (the Android "133" family) usually clear on the second try."""
    gatt: float = 5.0
    """One ATT request (read, CCCD write) is a few connection intervals; 5 s means it is lost."""
    command: float = 5.0
    """The lock answers each 20-byte packet within a few intervals (noke.md §11 suggests 5 s)."""
    cloud: float = 10.0
    """One HTTP request to the vendor cloud, connect + read (Nokē's Android library uses 10 s)."""
    visit: float = 60.0
    """One whole visit, retries included: the user is standing at the lock waiting."""


_DEFAULT_TIMEOUTS = Timeouts()


class Settings(BaseModel):
    """Everything blelock reads from the config file and the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    noke_url: str = "https://coreapi-sandbox.appspot.com/"
    noke_api_key: SecretStr | None = None
    noke_mobile_key: SecretStr | None = None
    keyless_url: str = "https://eu-api.keyless.assaabloy.com/administration/"
    keyless_api_key: SecretStr | None = None
    keyless_user_id: UUID | None = Field(
        default=None, description="the Keyless administrator's userId (Administration API login)"
    )
    keyless_access_key: SecretStr | None = None
    ble_client_backend: str | None = Field(
        default=None,
        description="bleak client backend as 'module:Class'; None = the platform's own",
    )
    ble_scanner_backend: str | None = Field(
        default=None,
        description="bleak scanner backend as 'module:Class'; None = the platform's own",
    )
    data_dir: Path | None = Field(
        default=None, description="where the store lives; None = the per-user data dir"
    )
    key_dir: Path | None = Field(
        default=None,
        description="where the store's data key file lives; None = the per-user config dir "
        "(BLELOCK_DATA_KEY, if set, is used instead of any file)",
    )
    offline_key_lifetime_days: float = Field(
        default=30, gt=0, description="how long a synced offline key is trusted without a sync"
    )
    scan_timeout: float = Field(default=_DEFAULT_TIMEOUTS.scan, gt=0)
    connect_timeout: float = Field(default=_DEFAULT_TIMEOUTS.connect, gt=0)
    command_timeout: float = Field(default=_DEFAULT_TIMEOUTS.command, gt=0)
    cloud_timeout: float = Field(default=_DEFAULT_TIMEOUTS.cloud, gt=0)

    @field_validator("noke_url", "keyless_url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value if value.endswith("/") else value + "/"

    @field_validator(
        "noke_api_key", "noke_mobile_key", "keyless_api_key", "keyless_access_key", mode="before"
    )
    @classmethod
    def _key_is_one_token(cls, value: object) -> object:
        """Blank means not set; anything else must be a header-safe token. The message never
        quotes the value: it is a secret."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            return value
        if not text.strip():
            return None
        if not _KEY_TOKEN.fullmatch(text.strip()):
            raise ValueError("must be printable ASCII without spaces or line breaks")
        return text.strip()

    @field_validator("ble_client_backend", "ble_scanner_backend")
    @classmethod
    def _module_colon_class(cls, value: str | None) -> str | None:
        if value is not None and (value.count(":") != 1 or not all(value.split(":"))):
            raise ValueError("must be written 'package.module:ClassName'")
        return value

    @property
    def store_dir(self) -> Path:
        return self.data_dir or Path(platformdirs.user_data_dir(APP_NAME))

    @property
    def data_key_dir(self) -> Path:
        return self.key_dir or Path(platformdirs.user_config_dir(APP_NAME))

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(
            scan=self.scan_timeout,
            connect=self.connect_timeout,
            command=self.command_timeout,
            cloud=self.cloud_timeout,
        )

    # --- `blelock serve`, the kiosk service ---------------------------------------------------
    serve_host: str = Field(
        default="127.0.0.1",
        description="address the local HTTP API listens on; keep it on loopback unless a "
        "firewall and TLS proxy stand in front",
    )
    serve_port: int = Field(
        default=8765, ge=0, le=65535, description="TCP port of the API; 0 = any free port"
    )
    serve_token: SecretStr | None = Field(
        default=None,
        description="bearer token every API request must carry; `blelock serve` refuses to "
        "start without one",
    )
    serve_firmware_dir: Path | None = Field(
        default=None,
        description="the only directory firmware packages are taken from by the API; None = "
        "firmware updates through the API are off",
    )
    max_connections: int = Field(
        default=3,
        ge=1,
        le=32,
        description="simultaneous BLE connections on the adapter; a Raspberry Pi's on-board "
        "controller holds a handful reliably, 3 leaves room for scanning",
    )
    lock_queue_limit: int = Field(
        default=8, ge=1, description="operations one lock may have running or waiting"
    )
    lock_wait_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds an operation waits for its lock (or a connection slot) before "
        "it is answered busy",
    )
    sync_interval: float = Field(
        default=60.0, gt=0, description="seconds between background log uploads and key checks"
    )
    key_refresh_horizon_hours: float = Field(
        default=72.0,
        gt=0,
        description="refresh an offline key this long before blelock stops trusting it",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="service logs: one line per event, as text or JSON"
    )

    @field_validator("serve_token", mode="before")
    @classmethod
    def _token_is_strong(cls, value: object) -> object:
        """The message never quotes the value: it is a secret."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            return value
        if not text.strip():
            return None
        if not _KEY_TOKEN.fullmatch(text.strip()) or len(text.strip()) < _MIN_TOKEN_LENGTH:
            raise ValueError(
                f"must be at least {_MIN_TOKEN_LENGTH} printable ASCII characters without "
                "spaces (e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return text.strip()


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def _from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    names = Settings.model_fields.keys()
    found = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and (name := key[len(ENV_PREFIX) :].lower()) in names:
            found[name] = value
    return found


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    read_file: bool = True,
) -> Settings:
    """Read the config file (if any), overlay the environment, validate.

    A file named explicitly (argument or ``BLELOCK_CONFIG``) must exist; the default one may not.
    ``read_file=False`` takes the environment alone (the demo must not see a user's real keys).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = _read_file(path, environ) if read_file else {}
    values.update(_from_environment(environ))
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise ConfigError(f"invalid settings ({problems})") from None


def _read_file(path: Path | None, environ: Mapping[str, str]) -> dict[str, Any]:
    explicit = path or (Path(environ["BLELOCK_CONFIG"]) if "BLELOCK_CONFIG" in environ else None)
    config_path = explicit or default_config_path()
    values: dict[str, Any] = {}
    try:
        with config_path.open("rb") as stream:
            values = tomllib.load(stream)
    except FileNotFoundError:
        if explicit is not None:
            raise ConfigError(f"config file {config_path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {config_path}: {exc.strerror}") from None
    return values
