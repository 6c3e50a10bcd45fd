"""The configuration table of ``docs/configuration.md``, rendered from ``Settings``.

The model is the one source: each field's variable, default and description
become a row (``streams/docs_pages.py`` puts the table into the page).
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from streams.settings import SECRETS_DIR_DOC, SECRETS_DIR_ENV, Settings


def variable(name: str, field: FieldInfo) -> str:
    """The environment variable a field is read from (its first alias, else the prefix)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    prefix = Settings.model_config.get("env_prefix", "")
    return f"{prefix}{name}".upper()


def shown_default(field: FieldInfo) -> str:
    """The default as the table shows it: a literal in backticks, or words."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("shown_default"), str):
        return str(extra["shown_default"])
    value: Any = field.default
    if value is None:
        return "none"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        value = str(value).lower()
    elif hasattr(value, "value"):  # an enum
        value = value.value
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def table() -> str:
    """The markdown table of every setting, in the model's order."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{variable(name, field)}` | {shown_default(field)} | {field.description} |")
        if name == "kafka_ssl_key_password":
            # Not a field: it says where the fields are read from.
            rows.append(f"| `{SECRETS_DIR_ENV}` | none | {SECRETS_DIR_DOC} |")
    return "\n".join(rows) + "\n"
