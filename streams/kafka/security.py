"""Turning the Kafka security settings into the arguments of the clients that use them.

Every Kafka client of the project is built from these: plain aiokafka clients
(producers, consumers, the admin client) take ``kafka_client_kwargs``; the
Faust app takes ``faust_broker_credentials``, which Faust's aiokafka driver
turns into the same ``security_protocol``, ``sasl_*`` and ``ssl_context``
arguments for its consumer and producer (``credentials_to_aiokafka_auth``).

The password only leaves its ``SecretStr`` here, into the client's arguments;
errors name the variables involved, never a value.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from aiokafka.helpers import create_ssl_context

from streams.settings import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


class KafkaSecurityError(ValueError):
    """The Kafka security settings contradict each other or name unreadable files."""


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Security arguments for any aiokafka client (``AIOKafkaProducer(**kwargs, ...)``).

    Always carries ``security_protocol``; adds ``ssl_context`` for SSL and
    SASL_SSL, and the SASL mechanism, user name and password for SASL_*.
    Raises ``KafkaSecurityError`` for settings that cannot work together.
    """
    check(settings)
    protocol = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in TLS_PROTOCOLS:
        kwargs["ssl_context"] = kafka_ssl_context(settings)
    if protocol in SASL_PROTOCOLS:
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = _sasl_password(settings)
    return kwargs


def kafka_client_kwargs_from_env() -> dict[str, Any]:
    """``kafka_client_kwargs`` of the settings in the environment (and secrets directory).

    For code handed a bootstrap address rather than settings: the security
    settings a command runs with are the environment's anyway.
    """
    return kafka_client_kwargs(Settings())


def faust_broker_credentials(settings: Settings) -> CredentialsT | None:
    """What ``faust.App(broker_credentials=...)`` takes for these settings; None for PLAINTEXT.

    ``SASLCredentials`` given an ``ssl_context`` becomes SASL_SSL, without one
    SASL_PLAINTEXT; its repr shows the user name only.
    """
    import faust  # here, not at the top: the gateway and the tools never load Faust

    check(settings)
    protocol = settings.kafka_security_protocol
    context = kafka_ssl_context(settings) if protocol in TLS_PROTOCOLS else None
    if protocol in SASL_PROTOCOLS:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=_sasl_password(settings),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of the broker connections: verifies the broker's certificate and name.

    The CA file replaces the system's trust store when given; a client
    certificate (mutual TLS) is loaded when given.
    """
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.kafka_ssl_ca_file,
            certfile=settings.kafka_ssl_cert_file,
            keyfile=settings.kafka_ssl_key_file,
            password=(
                settings.kafka_ssl_key_password.get_secret_value()
                if settings.kafka_ssl_key_password
                else None
            ),
        )
    except (OSError, ssl.SSLError) as exc:
        # The paths are configuration, not secrets; the OpenSSL reason says what is wrong.
        files = ", ".join(
            f"{name}={path}"
            for name, path in (
                ("CONTINUITY_KAFKA_SSL_CA_FILE", settings.kafka_ssl_ca_file),
                ("CONTINUITY_KAFKA_SSL_CERT_FILE", settings.kafka_ssl_cert_file),
                ("CONTINUITY_KAFKA_SSL_KEY_FILE", settings.kafka_ssl_key_file),
            )
            if path is not None
        )
        raise KafkaSecurityError(
            f"cannot load the Kafka TLS files ({files or 'system trust store'}): "
            f"{type(exc).__name__}: {_reason(exc)}"
        ) from None
    return context


def check(settings: Settings) -> None:
    """Refuse settings that would not do what they say; ``KafkaSecurityError`` names the fix.

    Credentials or TLS files next to a protocol that does not use them are
    refused rather than ignored: an operator who set a CA file believes the
    connection is encrypted.
    """
    protocol = settings.kafka_security_protocol
    problems: list[str] = []
    if protocol in SASL_PROTOCOLS:
        if not settings.kafka_sasl_username:
            problems.append(f"{protocol} needs CONTINUITY_KAFKA_SASL_USERNAME")
        if settings.kafka_sasl_password is None:
            problems.append(f"{protocol} needs CONTINUITY_KAFKA_SASL_PASSWORD")
    else:
        for name, value in (
            ("CONTINUITY_KAFKA_SASL_USERNAME", settings.kafka_sasl_username),
            ("CONTINUITY_KAFKA_SASL_PASSWORD", settings.kafka_sasl_password),
        ):
            if value is not None:
                problems.append(f"{name} is set but {protocol} does not use SASL")
    if protocol not in TLS_PROTOCOLS:
        tls: tuple[tuple[str, object], ...] = (
            ("CONTINUITY_KAFKA_SSL_CA_FILE", settings.kafka_ssl_ca_file),
            ("CONTINUITY_KAFKA_SSL_CERT_FILE", settings.kafka_ssl_cert_file),
            ("CONTINUITY_KAFKA_SSL_KEY_FILE", settings.kafka_ssl_key_file),
            ("CONTINUITY_KAFKA_SSL_KEY_PASSWORD", settings.kafka_ssl_key_password),
        )
        for name, setting in tls:
            if setting is not None:
                problems.append(f"{name} is set but {protocol} does not use TLS")
    elif settings.kafka_ssl_key_file is not None and settings.kafka_ssl_cert_file is None:
        problems.append("CONTINUITY_KAFKA_SSL_KEY_FILE needs CONTINUITY_KAFKA_SSL_CERT_FILE")
    if problems:
        raise KafkaSecurityError(
            f"Kafka security settings (CONTINUITY_KAFKA_SECURITY_PROTOCOL={protocol}): "
            + "; ".join(problems)
        )


def describe(settings: Settings) -> str:
    """A loggable summary: protocol, mechanism and user, never a password."""
    protocol = settings.kafka_security_protocol
    if protocol in SASL_PROTOCOLS:
        return f"{protocol} {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username!r}"
    return protocol


def _sasl_password(settings: Settings) -> str:
    """The SASL password in clear, for a client's arguments only (``check`` demands one)."""
    if settings.kafka_sasl_password is None:
        raise KafkaSecurityError("CONTINUITY_KAFKA_SASL_PASSWORD is not set")
    return settings.kafka_sasl_password.get_secret_value()


def _reason(exc: BaseException) -> str:
    """The error's own words (OpenSSL's reason for an ``ssl.SSLError``), without its class."""
    return getattr(exc, "strerror", None) or str(exc)
