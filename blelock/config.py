"""Settings: a TOML file and ``BLELOCK_*`` environment variables, read by pydantic-settings.

Core settings are top-level fields; each vendor plugin has its own section (``[noke]``,
``[keyless]`` …, ``BLELOCK_NOKE__API_KEY``), whose model the plugin keeps (see
:mod:`blelock.registry`). The flat names of earlier releases (``noke_api_key`` in the file,
``BLELOCK_NOKE_API_KEY``) still work: a vendor section's field ``f`` also answers to ``name_f``.
Unknown file fields and unknown ``BLELOCK_*`` variables are refused, naming them.

Where things live (platformdirs): ``config.toml`` in the user config dir; the data dir holds the
store. ``BLELOCK_CONFIG`` names another file.

Secrets (API keys) are :class:`pydantic.SecretStr`: they print as ``**********`` and reach the
wire only through ``get_secret_value()`` at the one place that sends them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import platformdirs
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from blelock import registry
from blelock.errors import ConfigError

__all__ = [
    "APP_NAME",
    "ApiKey",
    "HttpUrl",
    "Section",
    "Settings",
    "Timeouts",
    "default_config_path",
    "load_settings",
]

APP_NAME = "blelock"
_KEY_TOKEN = re.compile(r"[\x21-\x7e]+")
ENV_PREFIX = "BLELOCK_"
_MIN_TOKEN_LENGTH = 16
"""A guessable API token would open every lock in the kiosk."""
NOT_SETTINGS = frozenset(
    {"BLELOCK_CONFIG", "BLELOCK_DATA_KEY", "BLELOCK_AGENT_SOCKET", registry.PLUGINS_ENV}
)
"""Variables blelock reads that are not settings: which file, the store's data key, where
`blelock agent` listens (read before any settings are, see blelock.entry), plugins."""
BACKEND_PREFIX = "BLELOCK_SIM_"
"""Left to the BLE backend named in the settings (the simulated one reads its radio's address
there); not reported as unknown."""
M = TypeVar("M", bound=BaseModel)


def _url_has_scheme(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value if value.endswith("/") else value + "/"


def _key_is_one_token(value: object) -> object:
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


HttpUrl = Annotated[str, AfterValidator(_url_has_scheme)]
"""A vendor cloud's base URL, with its scheme, ending in a slash."""
ApiKey = Annotated[SecretStr | None, BeforeValidator(_key_is_one_token)]
"""A credential sent in a header: blank is "not set"."""


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


class Section(BaseModel):
    """A vendor plugin's settings section: refuses unknown fields, like the file's top level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    legacy_names: ClassVar[Mapping[str, str]] = {}
    """Flat names of earlier releases that are not ``<vendor>_<field>``: flat name → field."""


class Settings(BaseSettings):
    """Everything blelock reads from the config file and the environment: the core fields here,
    each vendor's section as a field of the class :func:`load_settings` makes for the
    registered vendors (read it with :meth:`section`)."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
    )

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
    scan_timeout: float = Field(default=_DEFAULT_TIMEOUTS.scan, gt=0)
    connect_timeout: float = Field(default=_DEFAULT_TIMEOUTS.connect, gt=0)
    command_timeout: float = Field(default=_DEFAULT_TIMEOUTS.command, gt=0)
    cloud_timeout: float = Field(default=_DEFAULT_TIMEOUTS.cloud, gt=0)

    @field_validator("ble_client_backend", "ble_scanner_backend")
    @classmethod
    def _module_colon_class(cls, value: str | None) -> str | None:
        if value is not None and (value.count(":") != 1 or not all(value.split(":"))):
            raise ValueError("must be written 'package.module:ClassName'")
        return value

    def section(self, name: str, model: type[M]) -> M:
        """The vendor ``name``'s section, as its model."""
        value = getattr(self, name, None)
        if not isinstance(value, model):
            raise ConfigError(f"the settings have no [{name}] section of {model.__name__}")
        return value

    def with_section(self, name: str, **changes: Any) -> Settings:
        """A copy with some of the ``name`` section's fields changed (validated again)."""
        section = getattr(self, name)
        changed = type(section).model_validate(section.model_dump() | changes)
        return self.model_copy(update={name: changed})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings reads the file and the environment it is given (a test's, the demo's),
        # never the process's own behind its back.
        return (init_settings,)

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
    serve_socket: Path | None = Field(
        default=None,
        description="a Unix socket path the API listens on instead of the TCP port (made "
        "0600, in a directory only its owner may write, e.g. $XDG_RUNTIME_DIR): no other local "
        "user can connect, nor take the kiosk's place while it is down",
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

    # --- access grants (blelock.access) ----------------------------------------------------
    access_database: SecretStr | None = Field(
        default=None,
        description="a PostgreSQL connection string (postgresql://…) for grants shared by "
        "several kiosks; None = grants in this device's own store",
    )
    access_code_key: SecretStr | None = Field(
        default=None,
        description="32 random bytes (URL-safe base64), the same on every kiosk sharing "
        "access_database: holders' codes (keypad PINs, quick clicks) are sealed under it there",
    )
    access_timezone: str = Field(
        default="UTC",
        description="the facility's IANA time zone: weekly windows are read in it unless a "
        "grant names another (checked when a grant is made: reading the zone database is "
        "file I/O)",
    )
    access_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="how long a reconciler holds a grant it works on (renewed before each "
        "vendor call; each call is given up after half of it); one that died is taken over "
        "after this",
    )
    access_batch: int = Field(
        default=10,
        ge=1,
        le=100,
        description="grants a reconciler takes at a time and works on at once (each grant's "
        "own vendor calls in order)",
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


@cache
def settings_class(sections: tuple[tuple[str, type[BaseModel]], ...]) -> type[Settings]:
    """Settings with one section field per vendor plugin that has settings."""
    fields: dict[str, Any] = {name: (model, model()) for name, model in sections}
    made: type[Settings] = create_model("Settings", __base__=Settings, **fields)
    return made


def _sections() -> tuple[tuple[str, type[BaseModel]], ...]:
    return tuple(
        (name, model) for name, model in registry.settings_models().items() if model is not None
    )


def _legacy_names(sections: tuple[tuple[str, type[BaseModel]], ...]) -> dict[str, tuple[str, str]]:
    """Flat name of an earlier release → (section, field)."""
    legacy: dict[str, tuple[str, str]] = {}
    for name, model in sections:
        for field_name in model.model_fields:
            legacy[f"{name}_{field_name}"] = (name, field_name)
        extra: Mapping[str, str] = getattr(model, "legacy_names", {})
        for flat, field_name in extra.items():
            legacy[flat] = (name, field_name)
    return legacy


def _nest(values: Mapping[str, Any], legacy: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """Move flat names into their sections; a value set in the section wins."""
    nested: dict[str, Any] = {}
    moved: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key in legacy:
            section, field_name = legacy[key]
            moved.setdefault(section, {})[field_name] = value
        else:
            nested[key] = value
    for section, fields in moved.items():
        given = nested.get(section)
        nested[section] = fields | (given if isinstance(given, dict) else {})
    return nested


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
    sections = _sections()
    legacy = _legacy_names(sections)
    cls = settings_class(sections)
    _refuse_unknown_variables(environ, cls, sections, legacy)
    file_values = _nest(_read_file(path, environ), legacy) if read_file else {}
    flat_env = _nest(
        {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in environ.items()
            if key.upper().startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in legacy
        },
        legacy,
    )

    env_values = _Environment(cls, environ)()
    # The environment over the file; the current names over the flat ones.
    values = _merge(_merge(file_values, flat_env), env_values)
    try:
        return cls(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise ConfigError(f"invalid settings ({problems})") from None


class _Environment(EnvSettingsSource):
    """pydantic-settings' reading of ``BLELOCK_*`` (nested ``SECTION__FIELD`` included), over
    the mapping it is given rather than the process's own environment."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._given = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._given, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(low)
    for key, value in high.items():
        below = merged.get(key)
        both_tables = isinstance(below, dict) and isinstance(value, dict)
        merged[key] = below | value if both_tables else value
    return merged


def _refuse_unknown_variables(
    environ: Mapping[str, str],
    cls: type[Settings],
    sections: tuple[tuple[str, type[BaseModel]], ...],
    legacy: Mapping[str, tuple[str, str]],
) -> None:
    known = {f"{ENV_PREFIX}{name}".upper() for name in cls.model_fields}
    known |= {f"{ENV_PREFIX}{flat}".upper() for flat in legacy}
    for section, model in sections:
        known |= {f"{ENV_PREFIX}{section}__{name}".upper() for name in model.model_fields}
    unknown = sorted(
        key
        for key in environ
        if key.upper().startswith(ENV_PREFIX)
        and key.upper() not in known | NOT_SETTINGS
        and not key.upper().startswith(BACKEND_PREFIX)
    )
    if unknown:
        raise ConfigError(
            f"unknown environment variable{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)} (not a blelock setting)",
            hint="check the spelling; `blelock --help` and README list the settings",
        )


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
