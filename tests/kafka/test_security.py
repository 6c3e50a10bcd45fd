"""Security settings without a broker: the client arguments, the secrets directory, masking.

Proves: each Kafka security protocol and SASL mechanism becomes exactly the
aiokafka arguments it should, which aiokafka's own clients accept; the Faust
credentials reach aiokafka through Faust's own translation as the same
arguments; contradictory settings are refused with the variables named and
no secret shown; a secrets directory (``CONTINUITY_SECRETS_DIR``) supplies the
token key, the Redis URL and the SASL password, the environment winning over
a file; no secret appears in a repr, a str, a JSON dump or a validation error.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from streams import cli
from streams.kafka.security import (
    KafkaSecurityError,
    describe,
    faust_broker_credentials,
    kafka_client_kwargs,
    kafka_client_kwargs_from_env,
)
from streams.settings import Settings
from streams.worker.app import base_app
from tests.support.tls_pki import Pki, make_pki

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SASL_PASSWORD = "sasl-pw-7f3a9c"
REDIS_PASSWORD = "redis-pw-41b2e8"
AUTH_SECRET = "token-key-" + "k" * 40


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the machine's environment leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("CONTINUITY_") or name in ("KAFKA_BOOTSTRAP", "REDIS_URL"):
            monkeypatch.delenv(name)


def sasl(protocol: str, mechanism: str = "SCRAM-SHA-512", **extra: Any) -> Settings:
    return Settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="continuity",
        kafka_sasl_password=SASL_PASSWORD,
        **extra,
    )


# --- The aiokafka arguments ------------------------------------------------------------


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert kafka_client_kwargs(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_broker_credentials(Settings()) is None


def test_ssl_verifies_the_broker_against_the_given_ca(pki: Pki) -> None:
    kwargs = kafka_client_kwargs(Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=pki.ca))
    assert set(kwargs) == {"security_protocol", "ssl_context"}
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    [ca] = context.get_ca_certs()
    assert dict(x[0] for x in ca["subject"])["commonName"] == "continuity test CA"


def test_ssl_without_a_ca_file_uses_the_system_trust_store() -> None:
    context = kafka_client_kwargs(Settings(kafka_security_protocol="SSL"))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_mutual_tls_loads_the_client_certificate_and_its_encrypted_key(pki: Pki) -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=pki.ca,
        kafka_ssl_cert_file=pki.client_cert,
        kafka_ssl_key_file=pki.client_key,
        kafka_ssl_key_password=pki.client_key_password,
    )
    assert isinstance(kafka_client_kwargs(settings)["ssl_context"], ssl.SSLContext)


def test_a_wrong_key_password_is_refused_without_showing_it(pki: Pki) -> None:
    wrong = "not-the-key-password-93c1"
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cert_file=pki.client_cert,
        kafka_ssl_key_file=pki.client_key,
        kafka_ssl_key_password=wrong,
    )
    with pytest.raises(KafkaSecurityError) as refused:
        kafka_client_kwargs(settings)
    assert "CONTINUITY_KAFKA_SSL_KEY_FILE" in str(refused.value)
    assert wrong not in str(refused.value)
    assert pki.client_key_password not in str(refused.value)


def test_an_unreadable_ca_file_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(KafkaSecurityError, match=r"CONTINUITY_KAFKA_SSL_CA_FILE=.*nope\.pem"):
        kafka_client_kwargs(Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=missing))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_plaintext_carries_mechanism_and_credentials_and_no_tls(mechanism: str) -> None:
    assert kafka_client_kwargs(sasl("SASL_PLAINTEXT", mechanism)) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "continuity",
        "sasl_plain_password": SASL_PASSWORD,
    }


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_ssl_carries_credentials_and_a_tls_context(mechanism: str, pki: Pki) -> None:
    kwargs = kafka_client_kwargs(sasl("SASL_SSL", mechanism, kafka_ssl_ca_file=pki.ca))
    context = kwargs.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "continuity",
        "sasl_plain_password": SASL_PASSWORD,
    }


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"kafka_security_protocol": "SSL"},
        *({"protocol": "SASL_PLAINTEXT", "mechanism": m} for m in MECHANISMS),
        *({"protocol": "SASL_SSL", "mechanism": m} for m in MECHANISMS),
    ],
    ids=str,
)
async def test_aiokafkas_own_clients_accept_the_arguments(settings: dict[str, str]) -> None:
    if "protocol" in settings:
        kwargs = kafka_client_kwargs(sasl(settings["protocol"], settings["mechanism"]))
    else:
        kwargs = kafka_client_kwargs(Settings(**settings))
    # Their constructors check the combination (SSL needs a context, SASL a mechanism
    # they know and PLAIN a user name and password); nothing connects until start().
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **kwargs)
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **kwargs)
    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:1", **kwargs)
    assert producer.client._security_protocol == kwargs["security_protocol"]
    assert consumer._client._sasl_mechanism == kwargs.get("sasl_mechanism", "PLAIN")
    await producer.stop()
    await consumer.stop()
    await admin.close()


# --- Faust ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_faust_hands_its_clients_the_same_arguments(protocol: str, pki: Pki) -> None:
    settings = (
        Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=pki.ca)
        if protocol == "SSL"
        else sasl(protocol, kafka_ssl_ca_file=pki.ca if protocol == "SASL_SSL" else None)
    )
    # The worker's own app: Faust's consumer and producer both build their
    # aiokafka arguments with credentials_to_aiokafka_auth from app.conf.
    app, _ = base_app(settings)
    via_faust = dict(
        credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    )
    ours = kafka_client_kwargs(settings)
    faust_context, our_context = via_faust.pop("ssl_context", None), ours.pop("ssl_context", None)
    assert (faust_context is None) == (our_context is None) == (protocol == "SASL_PLAINTEXT")
    if faust_context is not None:
        assert isinstance(faust_context, ssl.SSLContext)
        assert faust_context.check_hostname
    assert via_faust == ours


def test_faust_credentials_by_protocol(pki: Pki) -> None:
    ssl_only = faust_broker_credentials(
        Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=pki.ca)
    )
    assert isinstance(ssl_only, faust.SSLCredentials)
    plain = faust_broker_credentials(sasl("SASL_PLAINTEXT", "PLAIN"))
    assert isinstance(plain, faust.SASLCredentials)
    assert plain.protocol.value == "SASL_PLAINTEXT"
    assert plain.mechanism.value == "PLAIN"
    assert plain.ssl_context is None
    over_tls = faust_broker_credentials(sasl("SASL_SSL", "SCRAM-SHA-256"))
    assert isinstance(over_tls, faust.SASLCredentials)
    assert over_tls.protocol.value == "SASL_SSL"
    assert over_tls.mechanism.value == "SCRAM-SHA-256"
    assert isinstance(over_tls.ssl_context, ssl.SSLContext)
    # Faust's repr of the credentials shows the user only.
    assert SASL_PASSWORD not in repr(over_tls)


# --- Contradictions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL"},
            "SASL_SSL needs CONTINUITY_KAFKA_SASL_USERNAME; "
            "SASL_SSL needs CONTINUITY_KAFKA_SASL_PASSWORD",
        ),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"},
            "SASL_PLAINTEXT needs CONTINUITY_KAFKA_SASL_PASSWORD",
        ),
        (
            {"kafka_sasl_username": "u", "kafka_sasl_password": SASL_PASSWORD},
            "CONTINUITY_KAFKA_SASL_USERNAME is set but PLAINTEXT does not use SASL; "
            "CONTINUITY_KAFKA_SASL_PASSWORD is set but PLAINTEXT does not use SASL",
        ),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_ssl_ca_file": "/ca.pem"},
            "CONTINUITY_KAFKA_SSL_CA_FILE is set but SASL_PLAINTEXT does not use TLS",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_key_file": "/client.key"},
            "CONTINUITY_KAFKA_SSL_KEY_FILE needs CONTINUITY_KAFKA_SSL_CERT_FILE",
        ),
    ],
)
def test_contradictions_are_refused_naming_the_variables(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(KafkaSecurityError) as refused:
        kafka_client_kwargs(Settings(**settings))
    assert message in str(refused.value)
    assert SASL_PASSWORD not in str(refused.value)
    with pytest.raises(KafkaSecurityError):
        faust_broker_credentials(Settings(**settings))


def test_unknown_protocols_and_mechanisms_are_refused_on_load() -> None:
    with pytest.raises(ValidationError):
        Settings(kafka_security_protocol="TLS")
    with pytest.raises(ValidationError):
        Settings(kafka_sasl_mechanism="GSSAPI")


def test_the_summary_names_protocol_mechanism_and_user_only() -> None:
    assert describe(Settings()) == "PLAINTEXT"
    assert describe(sasl("SASL_SSL")) == "SASL_SSL SCRAM-SHA-512 as 'continuity'"


def test_a_command_with_contradictory_settings_stops_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONTINUITY_STATE_DIR", "/nonexistent")
    monkeypatch.setenv("CONTINUITY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CONTINUITY_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    # Refused before any connection is tried: the broker address is a dead end.
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert cli.main(["offsets", "rewind", "--timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert "continuity offsets: " in err
    assert "SASL_SSL needs CONTINUITY_KAFKA_SASL_USERNAME" in err
    assert SASL_PASSWORD not in err


def test_tools_read_the_environments_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTINUITY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CONTINUITY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("CONTINUITY_KAFKA_SASL_USERNAME", "continuity")
    monkeypatch.setenv("CONTINUITY_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    assert kafka_client_kwargs_from_env() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "continuity",
        "sasl_plain_password": SASL_PASSWORD,
    }


# --- Secrets from files -----------------------------------------------------------------


def write_secrets(root: Path, **files: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (root / name).write_text(value + "\n")  # as `kubectl create secret` leaves them
    return root


def test_a_secrets_directory_supplies_the_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    vault = write_secrets(
        tmp_path / "secrets",
        CONTINUITY_AUTH_SECRET=AUTH_SECRET,
        REDIS_URL=f"rediss://continuity:{REDIS_PASSWORD}@redis:6380/0",
        CONTINUITY_KAFKA_SASL_PASSWORD=SASL_PASSWORD,
    )
    monkeypatch.setenv("CONTINUITY_SECRETS_DIR", str(vault))
    settings = Settings()
    assert settings.auth_secret is not None
    assert settings.auth_secret.get_secret_value() == AUTH_SECRET
    assert settings.redis_dsn() == f"rediss://continuity:{REDIS_PASSWORD}@redis:6380/0"
    assert settings.kafka_sasl_password == SecretStr(SASL_PASSWORD)


def test_the_prefixed_name_of_the_redis_url_works_as_a_file_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    vault = write_secrets(tmp_path / "s", CONTINUITY_REDIS_URL="redis://:pw@h:1/0")
    monkeypatch.setenv("CONTINUITY_SECRETS_DIR", str(vault))
    assert Settings().redis_dsn() == "redis://:pw@h:1/0"


def test_the_environment_wins_over_a_secret_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    vault = write_secrets(tmp_path / "s", CONTINUITY_KAFKA_SASL_PASSWORD="from-file")
    monkeypatch.setenv("CONTINUITY_SECRETS_DIR", str(vault))
    monkeypatch.setenv("CONTINUITY_KAFKA_SASL_PASSWORD", "from-env")
    assert Settings().kafka_sasl_password == SecretStr("from-env")


def test_every_setting_can_come_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    vault = write_secrets(
        tmp_path / "s",
        CONTINUITY_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        CONTINUITY_KAFKA_SASL_USERNAME="continuity",
        KAFKA_BOOTSTRAP="kafka-0:9093",
    )
    monkeypatch.setenv("CONTINUITY_SECRETS_DIR", str(vault))
    settings = Settings()
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_username == "continuity"
    assert settings.kafka_bootstrap == "kafka-0:9093"


def test_without_a_secrets_directory_nothing_is_read_from_files(tmp_path: Path) -> None:
    assert Settings().auth_secret is None


def test_a_secrets_directory_that_is_not_there_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONTINUITY_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(
        SettingsError, match=r"CONTINUITY_SECRETS_DIR=.*missing.* is not a directory"
    ):
        Settings()


def test_an_explicit_secrets_dir_argument_still_works(tmp_path: Path) -> None:
    vault = write_secrets(tmp_path / "s", CONTINUITY_AUTH_SECRET=AUTH_SECRET)
    settings = Settings(_secrets_dir=vault)
    assert settings.auth_secret == SecretStr(AUTH_SECRET)


# --- Masking ----------------------------------------------------------------------------


def test_no_secret_shows_in_a_repr_a_str_or_a_dump(pki: Pki) -> None:
    settings = Settings(
        REDIS_URL=f"rediss://continuity:{REDIS_PASSWORD}@redis:6380/0",
        auth_secret=AUTH_SECRET,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="continuity",
        kafka_sasl_password=SASL_PASSWORD,
        kafka_ssl_cert_file=pki.client_cert,
        kafka_ssl_key_file=pki.client_key,
        kafka_ssl_key_password=pki.client_key_password,
    )
    shown = "\n".join(
        [
            repr(settings),
            str(settings),
            settings.model_dump_json(),
            str(settings.model_dump()),
            describe(settings),
            repr(faust_broker_credentials(settings)),
        ]
    )
    for secret in (REDIS_PASSWORD, AUTH_SECRET, SASL_PASSWORD, pki.client_key_password):
        assert secret not in shown
    assert "continuity" in shown  # the user name is not a secret


def test_a_validation_error_does_not_show_the_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://:{REDIS_PASSWORD}@h:1/0")
    monkeypatch.setenv("CONTINUITY_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.setenv("CONTINUITY_BATCH_MAX", "many")
    with pytest.raises(ValidationError) as invalid:
        Settings()
    assert "batch_max" in str(invalid.value)
    assert REDIS_PASSWORD not in str(invalid.value)
    assert SASL_PASSWORD not in str(invalid.value)
