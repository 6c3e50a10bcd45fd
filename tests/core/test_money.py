"""Prices: the pydantic model and the exported JSON Schema give the same answer. Pure.

The contract's ``unit_price`` is a decimal string. Producers in other languages
validate against ``schemas/json/cart.item_added.schema.json``; the worker and the
gateway validate with the model. One table of cases runs through both, so a string
one accepts and the other refuses (``1e3``, ``-0``, ``1_000``, ``" 5 "``: all
taken by ``Decimal()``) fails here.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from schemas.events import ItemAdded
from streams.ops.schema_export import rendered

# (unit_price as sent, valid?)
CASES: list[tuple[Any, bool]] = [
    ("19.99", True),
    ("0", True),
    ("0.0001", True),
    ("12345678.1234", True),
    ("007.50", True),
    ("1e3", False),
    ("1E3", False),
    ("-0", False),
    ("-1.00", False),
    ("+5", False),
    ("1_000", False),
    (" 5 ", False),
    ("5 ", False),
    ("5\n", False),
    ("", False),
    (".5", False),
    ("5.", False),
    ("5.12345", False),
    ("123456789", False),
    ("NaN", False),
    ("Infinity", False),
    ("\u0661\u0662", False),  # Arabic-Indic digits: Decimal() takes them
    ("\uff11\uff12", False),  # fullwidth digits
    (19.99, False),
    (5, False),
    (None, False),
]


def _payload(price: Any) -> dict[str, Any]:
    return {"sku": "A-1", "quantity": 1, "unit_price": price, "currency": "EUR"}


def _model_accepts(price: Any) -> bool:
    try:
        ItemAdded.model_validate(_payload(price))
    except ValidationError:
        return False
    return True


def _schema_accepts(price: Any) -> bool:
    schema = json.loads(rendered()["cart.item_added.schema.json"])
    # The event's schema, narrowed to its payload definition (same $defs).
    payload = {**schema["$defs"]["ItemAdded"], "$defs": schema["$defs"]}
    validator = jsonschema.Draft202012Validator(payload)
    return bool(validator.is_valid(_payload(price)))


@pytest.mark.parametrize(("price", "valid"), CASES, ids=[repr(c[0]) for c in CASES])
def test_the_model_and_the_exported_schema_agree_on_prices(price: Any, valid: bool) -> None:
    assert _schema_accepts(price) is valid, "the exported JSON Schema"
    assert _model_accepts(price) is valid, "the pydantic model (what the worker decides)"


def test_a_refused_price_says_what_the_contract_wants() -> None:
    with pytest.raises(ValidationError, match="decimal string"):
        ItemAdded.model_validate(_payload("1e3"))
