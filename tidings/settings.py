"""Worker and CLI settings: one TOML file, overridable by environment variables.

The file is `tidings.toml` in the working directory, or the path in `TIDINGS_SETTINGS`.
Any value can be overridden with `TIDINGS_<SECTION>__<FIELD>`, e.g. `TIDINGS_SMTP__HOST=mail`
or `TIDINGS_TEMPORAL__ADDRESS=temporal:7233` (this is how docker-compose configures the worker).

Credentials are `SecretStr`: they print as `**********` and are read only by activities in the
worker process. They never travel in workflow input or history.
"""

from __future__ import annotations

import difflib
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tidings.codec import decode_key
from tidings.models import DEFAULT_TASK_QUEUE, CapPolicy, CapRules, Channel, RetrySpec
from tidings.webhook_signature import decode_secret

SETTINGS_ENV = "TIDINGS_SETTINGS"
DEFAULT_SETTINGS_FILE = "tidings.toml"


class SettingsError(Exception):
    """The settings file or environment holds something invalid; the message says what to fix."""


class Section(BaseModel):
    """One `[section]` of the settings file (or its `TIDINGS_<SECTION>__*` variables).

    Unknown keys are refused rather than ignored: `[temporal] adress = ...` would otherwise run
    with the default address and no hint of the typo.
    """

    model_config = ConfigDict(extra="forbid")


class TemporalSettings(Section):
    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    tls: bool = False
    api_key: SecretStr | None = None


class WorkerSettings(Section):
    max_concurrent_activities: int = Field(default=200, ge=1)
    max_concurrent_local_activities: int = Field(default=200, ge=1)
    max_concurrent_workflow_tasks: int = Field(default=100, ge=1)
    graceful_shutdown_timeout: timedelta = timedelta(seconds=20)


class StoreSettings(Section):
    """Where subscribers, the inbox and receipts live: SQLite (one machine) or PostgreSQL (several).

    `dsn` holds the database password: it is a secret, set it with `TIDINGS_STORE__DSN`.
    """

    backend: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: Path = Path("data/tidings.sqlite3")
    dsn: SecretStr | None = Field(
        default=None, description="PostgreSQL connection string, postgresql://USER:PASSWORD@HOST:PORT/DB"
    )
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    timeout: float = Field(default=5.0, gt=0, description="seconds to wait for a database connection")
    migrate_on_start: bool = Field(
        default=True, description="the worker and receiver apply pending migrations when they start"
    )

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> StoreSettings:
        if self.backend == "postgres" and not (self.dsn and self.dsn.get_secret_value()):
            raise ValueError(
                'store.backend = "postgres" needs store.dsn (postgresql://USER:PASSWORD@HOST:PORT/DB); '
                "set it with TIDINGS_STORE__DSN"
            )
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("store.pool_min_size is larger than store.pool_max_size")
        return self


class SmtpSettings(Section):
    host: str = "localhost"
    port: int = Field(default=1025, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    use_tls: bool = False
    start_tls: bool | None = None
    validate_certs: bool = True
    timeout: float = Field(default=30.0, gt=0)
    from_address: str = "Tidings <notifications@tidings.localhost>"


def _check_webhook_secret(secret: SecretStr | None) -> SecretStr | None:
    if secret is not None:
        decode_secret(secret.get_secret_value())
    return secret


class WebhookSettings(Section):
    timeout: float = Field(default=15.0, gt=0)
    signing_secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks secret (whsec_...) used when an endpoint has none"
    )
    endpoint_secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="per endpoint URL, its signing secret"
    )

    @field_validator("signing_secret")
    @classmethod
    def _valid_secret(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_webhook_secret(value)

    @field_validator("endpoint_secrets")
    @classmethod
    def _valid_secrets(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for secret in value.values():
            _check_webhook_secret(secret)
        return value


class FcmSettings(Section):
    project_id: str | None = None
    service_account_file: Path | None = None
    base_url: str = "https://fcm.googleapis.com"
    timeout: float = Field(default=10.0, gt=0)


class ApnsSettings(Section):
    team_id: str | None = None
    key_id: str | None = None
    private_key_file: Path | None = None
    topic: str | None = Field(default=None, description="default apns-topic (bundle id)")
    use_sandbox: bool = False
    base_url: str | None = Field(default=None, description="overrides the production/sandbox host")
    ca_bundle: Path | None = None
    token_refresh_interval: timedelta = timedelta(minutes=50)
    timeout: float = Field(default=10.0, gt=0)


class WebPushSettings(Section):
    vapid_private_key: SecretStr | None = Field(default=None, description="base64url raw P-256 key or PEM")
    vapid_subject: str = "mailto:notifications@tidings.localhost"
    ca_bundle: Path | None = Field(default=None, description="trust these CAs for push services (tests, dev)")
    timeout: float = Field(default=10.0, gt=0)


class TwilioSettings(Section):
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    from_number: str | None = None
    messaging_service_sid: str | None = None
    base_url: str = "https://api.twilio.com"
    status_callback_url: str | None = None
    max_segments: int = Field(default=4, ge=1)
    timeout: float = Field(default=10.0, gt=0)


class SlackSettings(Section):
    bot_token: SecretStr | None = None
    api_base_url: str = "https://slack.com/api"
    timeout: float = Field(default=10.0, gt=0)


class ReceiverSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8088"
    link_signing_key: SecretStr | None = None


class ApiSettings(Section):
    """`tidings api`: the HTTP API for services (API keys) and for recipients' apps and browsers
    (subscriber tokens, the inbox, live updates, the preference center). See `tidings/api/`."""

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    public_url: str = Field(
        default="http://127.0.0.1:8090", description="how browsers reach the API (preference links)"
    )
    subscriber_token_key: SecretStr | None = Field(
        default=None,
        description="HMAC key of subscriber tokens (32+ characters); apps' backends may hold it too",
    )
    subscriber_token_ttl: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    preference_link_ttl: timedelta = Field(default=timedelta(days=30), gt=timedelta(0))
    allowed_origins: list[str] = Field(
        default_factory=list, description="origins allowed to call the API from browsers (CORS)"
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    rate_limit_per_second: float = Field(default=50.0, gt=0, description="per API key, per API process")
    rate_limit_burst: int = Field(default=100, ge=1)
    critical_categories: list[str] = Field(
        default_factory=list, description="categories recipients cannot opt out of"
    )
    preference_categories: list[str] = Field(
        default_factory=list,
        description="the categories the preference center offers (besides critical ones)",
    )

    @field_validator("subscriber_token_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None  # set but empty (`${SUBSCRIBER_TOKEN_KEY:-}` in docker-compose): not configured
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("api.subscriber_token_key needs 32 characters or more")
        return value


class CodecSettings(Section):
    """Payload encryption (see tidings/codec.py): off unless `enabled`.

    `keys` maps key ids to base64 AES-256 keys (`tidings codec generate-key`); `active_key`
    encrypts new payloads, every key decrypts. Set them with `TIDINGS_CODEC__KEYS='{"k2": "..."}'`
    and `TIDINGS_CODEC__ACTIVE_KEY=k2`. `hash_recipient_ids` stores HMAC-SHA256(key, id) in the
    `RecipientId` search attribute instead of the id.
    """

    enabled: bool = False
    keys: dict[str, SecretStr] = Field(default_factory=dict, description="key id -> base64 32-byte key")
    active_key: str | None = Field(default=None, description="the key id new payloads are encrypted with")
    hash_recipient_ids: bool = False
    recipient_id_hash_key: SecretStr | None = None

    @field_validator("keys")
    @classmethod
    def _valid_keys(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for key_id, key in value.items():
            if not key_id or not key_id.isascii() or not key_id.isprintable():
                raise ValueError("key ids must be printable ASCII")
            try:
                decode_key(key.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"key {key_id!r} {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CodecSettings:
        if self.enabled:
            if not self.keys:
                raise ValueError("codec.enabled needs codec.keys (`tidings codec generate-key` makes one)")
            if self.active_key is None:
                raise ValueError("codec.enabled needs codec.active_key, one of the ids in codec.keys")
        if self.active_key is not None and self.active_key not in self.keys:
            raise ValueError(f"codec.active_key {self.active_key!r} is not an id in codec.keys")
        if self.hash_recipient_ids and not (
            self.recipient_id_hash_key and len(self.recipient_id_hash_key.get_secret_value()) >= 16
        ):
            raise ValueError(
                "codec.hash_recipient_ids needs codec.recipient_id_hash_key (16 characters or more)"
            )
        return self


class CodecServerSettings(Section):
    """`tidings codec-server`: /encode and /decode for the Web UI and `temporal --codec-endpoint`."""

    host: str = "127.0.0.1"
    port: int = Field(default=8089, ge=1, le=65535)
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:8080", "http://127.0.0.1:8080"],
        description="the Web UI's origins (CORS); no other origin is answered",
    )
    auth_token: SecretStr | None = Field(
        default=None,
        description="callers send it as `Authorization: Bearer <token>` or as the first path segment",
    )
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)


class TemplateSettings(Section):
    directory: Path | None = Field(default=None, description="defaults to the bundled templates")
    default_locale: str = "en"


class MetricsSettings(Section):
    prometheus_address: str = Field(
        default="", description='worker metrics on http://ADDRESS/metrics ("0.0.0.0:9464"); off when empty'
    )


class LoggingSettings(Section):
    format: Literal["text", "json"] = Field(default="text", description="json: one JSON object per line")


class NamedSmtpSettings(SmtpSettings):
    """`[providers.NAME] kind = "smtp"`: a second SMTP relay, with its own host and credentials."""

    kind: Literal["smtp"]


class NamedTwilioSettings(TwilioSettings):
    """`[providers.NAME] kind = "twilio"`: a second Twilio account or messaging service."""

    kind: Literal["twilio"]

    @model_validator(mode="after")
    def _complete(self) -> NamedTwilioSettings:
        if not (self.account_sid and self.auth_token):
            raise ValueError("a twilio provider needs account_sid and auth_token")
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("a twilio provider needs from_number or messaging_service_sid")
        return self


NamedProviderSettings = Annotated[NamedSmtpSettings | NamedTwilioSettings, Field(discriminator="kind")]

PROVIDER_KINDS: dict[Channel, str] = {Channel.email: "smtp", Channel.sms: "twilio"}
"""The channels whose provider can fail over, and the kind of provider each one takes."""

BUILT_IN_PROVIDERS = frozenset({"smtp", "twilio", "fcm", "apns", "webpush", "slack", "webhook", "inbox"})
PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class ChannelProviders(Section):
    """`[channels.email] providers = ["smtp", "smtp_backup"]`: the providers a channel tries, in order."""

    providers: list[str] = Field(min_length=1, max_length=8)

    @field_validator("providers")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed more than once")
        return value


class ProviderBudget(Section):
    """How long one provider is tried for a delivery, and when its circuit breaker opens.

    Every field left out takes the value of `[failover]`."""

    attempts: int | None = Field(default=None, ge=1, le=100)
    time: timedelta | None = None
    breaker_threshold: int | None = Field(default=None, ge=1, le=1000)
    breaker_cooldown: timedelta | None = None

    @field_validator("time", "breaker_cooldown")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


class FailoverPolicy(BaseModel):
    """The resolved budget and breaker settings of one provider (see `FailoverSettings.policy_for`)."""

    model_config = ConfigDict(frozen=True)

    attempts: int
    time: timedelta
    breaker_threshold: int
    breaker_cooldown: timedelta


class FailoverSettings(Section):
    """`[failover]`: the defaults for every provider of a channel with several providers, and
    `[failover.providers.NAME]` for one provider.

    A delivery moves from a provider to the next one after `attempts` retryable failures or once
    `time` has passed since its first attempt there, whichever comes first (Courier's default is
    five minutes per provider). After `breaker_threshold` consecutive retryable failures on a
    worker, the provider's circuit opens: new deliveries skip it for `breaker_cooldown`, then one
    probe decides whether it closes.
    """

    attempts: int = Field(default=3, ge=1, le=100)
    time: timedelta = timedelta(minutes=5)
    breaker_threshold: int = Field(default=5, ge=1, le=1000)
    breaker_cooldown: timedelta = timedelta(seconds=60)
    providers: dict[str, ProviderBudget] = Field(default_factory=dict)

    @field_validator("time", "breaker_cooldown")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value

    def policy_for(self, provider: str) -> FailoverPolicy:
        own = self.providers.get(provider) or ProviderBudget()
        return FailoverPolicy(
            attempts=own.attempts if own.attempts is not None else self.attempts,
            time=own.time if own.time is not None else self.time,
            breaker_threshold=(
                own.breaker_threshold if own.breaker_threshold is not None else self.breaker_threshold
            ),
            breaker_cooldown=own.breaker_cooldown
            if own.breaker_cooldown is not None
            else self.breaker_cooldown,
        )


class FrequencyCapSettings(Section):
    """The default frequency caps per channel, for every recipient whose preferences set none.

        [frequency_caps]
        push = ["3/PT1H", "10/P1D"]      # at most 3 per hour and 10 per day (sliding windows)
        policy = "defer"                  # the excess waits for the next free slot ...
        category_policy = { marketing = "drop" }  # ... or ends `throttled`, per category

    `critical` notifications are never capped (and not counted).
    """

    push: CapRules = Field(default_factory=list)
    email: CapRules = Field(default_factory=list)
    sms: CapRules = Field(default_factory=list)
    slack: CapRules = Field(default_factory=list)
    webhook: CapRules = Field(default_factory=list)
    in_app: CapRules = Field(default_factory=list)
    policy: CapPolicy = "defer"
    category_policy: dict[str, CapPolicy] = Field(default_factory=dict)

    def policy_for(self, category: str | None) -> CapPolicy:
        return self.category_policy.get(category, self.policy) if category else self.policy

    def capped_channels(self) -> frozenset[Channel]:
        """The channels these defaults cap (those with at least one rule)."""
        return frozenset(channel for channel in Channel if getattr(self, channel.value, None))


def _default_retry() -> dict[Channel, RetrySpec]:
    return {
        Channel.push: RetrySpec(maximum_attempts=5),
        Channel.email: RetrySpec(maximum_attempts=6, maximum_interval=timedelta(minutes=10)),
        Channel.sms: RetrySpec(maximum_attempts=4),
        Channel.slack: RetrySpec(maximum_attempts=5),
        Channel.webhook: RetrySpec(maximum_attempts=8, maximum_interval=timedelta(minutes=30)),
        Channel.in_app: RetrySpec(maximum_attempts=10, start_to_close_timeout=timedelta(seconds=10)),
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TIDINGS_", env_nested_delimiter="__", extra="forbid", toml_file=None
    )

    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    retry: dict[Channel, RetrySpec] = Field(default_factory=_default_retry)
    push_success: Literal["any", "all"] = Field(
        default="any", description="push counts as delivered when any (or all) devices accepted"
    )
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    fcm: FcmSettings = Field(default_factory=FcmSettings)
    apns: ApnsSettings = Field(default_factory=ApnsSettings)
    webpush: WebPushSettings = Field(default_factory=WebPushSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    receiver: ReceiverSettings = Field(default_factory=ReceiverSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    templates: TemplateSettings = Field(default_factory=TemplateSettings)
    codec: CodecSettings = Field(default_factory=CodecSettings)
    codec_server: CodecServerSettings = Field(default_factory=CodecServerSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    providers: dict[str, NamedProviderSettings] = Field(
        default_factory=dict, description="named provider instances: [providers.NAME] kind = ..."
    )
    channels: dict[Channel, ChannelProviders] = Field(
        default_factory=dict, description="per channel, the providers it tries in order"
    )
    failover: FailoverSettings = Field(default_factory=FailoverSettings)

    @model_validator(mode="after")
    def _providers_exist(self) -> Settings:
        """Every name in `channels.*.providers` and `failover.providers` is a provider of the right
        kind; the errors name the key, so a typo is found at start, not at the first failover."""
        for name in self.providers:
            if name in BUILT_IN_PROVIDERS:
                raise ValueError(
                    f"providers.{name}: {name!r} is a built-in provider; configure it in [{name}]"
                )
            if not PROVIDER_NAME.match(name):
                raise ValueError(
                    f"providers.{name}: provider names are 1-40 lowercase letters, digits and _,"
                    " starting with a letter"
                )
        for channel, chain in self.channels.items():
            key = f"channels.{channel.value}.providers"
            kind = PROVIDER_KINDS.get(channel)
            if kind is None:
                served = ", ".join(c.value for c in PROVIDER_KINDS)
                raise ValueError(f"{key}: only {served} can have several providers")
            for name in chain.providers:
                self._check_provider(key, name, kind)
            if len(chain.providers) > 1:
                self._check_attempts_cover(channel, chain.providers)
        for name in self.failover.providers:
            if name not in BUILT_IN_PROVIDERS and name not in self.providers:
                raise ValueError(
                    f"failover.providers.{name}: no provider is named {name!r}{self._hint(name)}"
                )
        return self

    def _hint(self, name: str) -> str:
        close = difflib.get_close_matches(name, [*self.providers, *BUILT_IN_PROVIDERS], n=1)
        return f" (did you mean {close[0]}?)" if close else ""

    def _check_provider(self, key: str, name: str, kind: str) -> None:
        if name == "twilio":
            t = self.twilio
            if not (t.account_sid and t.auth_token and (t.from_number or t.messaging_service_sid)):
                raise ValueError(
                    f"{key}: 'twilio' needs twilio.account_sid, twilio.auth_token and "
                    "twilio.from_number or twilio.messaging_service_sid"
                )
        if name == kind:
            return
        named = self.providers.get(name)
        if named is None:
            raise ValueError(
                f"{key}: {name!r} is not a provider{self._hint(name)}; "
                f'define it as [providers.{name}] with kind = "{kind}"'
            )
        if named.kind != kind:
            raise ValueError(f"{key}: {name!r} is a {named.kind} provider; this channel needs {kind}")

    def _check_attempts_cover(self, channel: Channel, chain: list[str]) -> None:
        """The channel's retry policy bounds a delivery across all its providers: it must leave at
        least one attempt for the last provider once the others have used their budgets."""
        maximum = self.retry_for(channel).maximum_attempts
        needed = sum(self.failover.policy_for(name).attempts for name in chain[:-1]) + 1
        if maximum < needed:
            before = ", ".join(chain[:-1])
            raise ValueError(
                f"retry.{channel.value}.maximum_attempts is {maximum}, but "
                f"channels.{channel.value}.providers needs at least {needed}: "
                f"the failover attempt budgets of {before} plus one attempt for {chain[-1]}"
            )

    def chain_for(self, channel: Channel) -> list[str]:
        """The providers a channel tries, in order ([] when it has not been configured)."""
        chain = self.channels.get(channel)
        return list(chain.providers) if chain else []

    frequency_caps: FrequencyCapSettings = Field(default_factory=FrequencyCapSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _settings_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def retry_for(self, channel: Channel) -> RetrySpec:
        return self.retry.get(channel) or _default_retry()[channel]


def _settings_path() -> Path | None:
    explicit = os.environ.get(SETTINGS_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SettingsError(f"{SETTINGS_ENV} points at {path}, which is not a file")
        return path
    default = Path(DEFAULT_SETTINGS_FILE)
    return default if default.is_file() else None


def _error_line(err: ErrorDetails) -> str:
    """One line per problem, naming the key; never the value (it may be a secret)."""
    where = ".".join(str(p) for p in err["loc"])
    if not where:  # a check across sections; its message names the keys
        return f"  {err['msg'].removeprefix('Value error, ')}"
    if err["type"] == "extra_forbidden":
        hint = _did_you_mean(err["loc"])
        return f"  {where}: unknown setting{hint}"
    return f"  {where}: {err['msg']}"


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """`temporal.adress` → ` (did you mean address?)`, from the fields of the section it is in."""
    model: type[BaseModel] | None = None
    if len(loc) == 1:
        model = Settings
    elif len(loc) == 2 and str(loc[0]) in Settings.model_fields:
        annotation = Settings.model_fields[str(loc[0])].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    elif len(loc) == 3 and loc[0] == "retry":
        model = RetrySpec
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation failures into one readable `SettingsError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [_error_line(err) for err in exc.errors(include_input=False)]
        source = os.environ.get(SETTINGS_ENV) or DEFAULT_SETTINGS_FILE
        raise SettingsError(
            "invalid Tidings settings (from " + source + " and TIDINGS_* variables):\n" + "\n".join(lines)
        ) from None
    except ValueError as exc:  # TOML syntax errors
        raise SettingsError(f"cannot read Tidings settings: {exc}") from None
