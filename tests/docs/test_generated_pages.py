"""Pages that mirror code are generated from it and current (``make docs`` rewrites them)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from streams import docs_pages, settings_page
from streams.docs_pages import PAGES, GeneratedPage
from streams.settings import Settings
from streams.store import keys

CONFIGURATION, REDIS_LAYOUT, GATEWAY_ROUTES, GATEWAY_ERRORS = PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_page_is_current(page: GeneratedPage) -> None:
    assert not page.stale(), f"docs/{page.name} is stale: run make docs"


def test_the_check_command_agrees() -> None:
    assert docs_pages.main(["--check"]) == 0


def test_a_page_without_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="markers"):
        CONFIGURATION.render("# Configuration\n\nno table here\n")


def test_make_docs_rewrites_only_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale copy gets the current table; the prose around it stays as written."""
    page = CONFIGURATION.path.read_text()
    head, _, rest = page.partition(CONFIGURATION.begin)
    _, _, tail = rest.partition(docs_pages.END)
    stale = f"{head}{CONFIGURATION.begin}\n| old | table |\n{docs_pages.END}{tail}"
    (tmp_path / CONFIGURATION.name).write_text(stale)
    (tmp_path / REDIS_LAYOUT.name).write_text(REDIS_LAYOUT.path.read_text())
    (tmp_path / GATEWAY_ROUTES.name).write_text(GATEWAY_ROUTES.path.read_text())  # both tables
    monkeypatch.setattr(docs_pages, "DOCS", tmp_path)
    assert docs_pages.main(["--check"]) == 1
    assert docs_pages.main([]) == 0
    assert (tmp_path / CONFIGURATION.name).read_text() == page
    assert docs_pages.main(["--check"]) == 0


# --- configuration ---------------------------------------------------------------------


def test_every_setting_has_a_row_with_a_meaning() -> None:
    table = settings_page.table()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert f"| `{settings_page.variable(name, field)}` |" in table


def test_a_changed_description_makes_the_page_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: the page no longer matches once the model says something else."""
    monkeypatch.setattr(Settings.model_fields["batch_max"], "description", "a different meaning")
    assert CONFIGURATION.stale()
    assert "| `CONTINUITY_BATCH_MAX` | `500` | a different meaning |" in settings_page.table()


def test_defaults_are_shown_as_the_environment_spells_them() -> None:
    table = settings_page.table()
    assert "| `CONTINUITY_SESSION_COMPRESSION` | `true` |" in table
    assert "| `CONTINUITY_MERGE_POLICY` | `combine` |" in table
    assert "| `CONTINUITY_KAFKA_SASL_USERNAME` | none |" in table
    assert "| `REDIS_URL` | `redis://127.0.0.1:6379/0` |" in table
    assert "| `CONTINUITY_METRICS_PORT` | `0` (off) |" in table


# --- Redis layout ----------------------------------------------------------------------


def test_a_changed_key_declaration_makes_the_page_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = replace(keys.OFFSET_TIMES, meaning="something else")
    monkeypatch.setattr(
        keys, "FAMILIES", tuple(changed if f.name == "offset_times" else f for f in keys.FAMILIES)
    )
    assert REDIS_LAYOUT.stale()
    assert "| `cont:{p<partition>}:ot` | hash | something else |" in REDIS_LAYOUT.table()


def test_the_layout_page_keeps_its_prose_and_lists_every_family() -> None:
    page = REDIS_LAYOUT.path.read_text()
    assert page.startswith("# Redis layout")
    prose = page.split(docs_pages.END)[1]
    # The tag, the count every process must share, and how a cluster is run (workers in
    # forward mode, gateways and the operator commands).
    assert "**The partition tag.**" in prose
    assert "`cont:{p7}:s:c-1`" in prose
    assert "CONTINUITY_TOPIC_PARTITIONS" in prose
    assert "**Redis Cluster.**" in prose
    assert "CONTINUITY_CROSS_PARTITION=forward" in prose
    assert "redis+cluster://" in prose
    for f in keys.FAMILIES:
        assert f"| `{f.shown()}` | {f.type.value} |" in page
        assert f.scope == "global" or "{p<partition>}" in f.shown()


# --- Gateway routes --------------------------------------------------------------------


def test_the_route_table_is_the_openapi_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every operation has a row; a changed summary in the contract makes the page stale."""
    from streams.gateway import contract

    table = GATEWAY_ROUTES.table()
    for route in contract.ROUTES:
        assert f"| `{route.method.upper()} {route.path}` |" in table
    first = replace(contract.ROUTES[0], summary="something else")
    monkeypatch.setattr(contract, "ROUTES", (first, *contract.ROUTES[1:]))
    monkeypatch.setattr("streams.gateway.openapi.ROUTES", contract.ROUTES)
    assert GATEWAY_ROUTES.stale()


# --- Gateway errors --------------------------------------------------------------------


def test_the_error_table_is_the_error_registrys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every code has a row; a changed meaning in ``errors.ERRORS`` makes the page stale,
    and the route table beside it on the same page is left as it is."""
    from streams.gateway import errors

    table = GATEWAY_ERRORS.table()
    for row in errors.ERRORS:
        assert f"| {row.status} | {', '.join(f'`{c}`' for c in row.codes)} |" in table
    first = replace(errors.ERRORS[0], when="something else")
    monkeypatch.setattr(errors, "ERRORS", (first, *errors.ERRORS[1:]))
    assert GATEWAY_ERRORS.stale()
    assert not GATEWAY_ROUTES.stale()
