"""The Lua scripts are loaded one way, and ``commit.lua``'s ARGV is declared once. Pure.

Proves: :data:`SCRIPTS` is exactly the folder's ``.lua`` files; the commit
script's header comment lists the head and the sections of
``COMMIT_SECTIONS`` (names, columns, order), and its ``section(width)`` calls
read them with the declared widths in that order, so Python and Lua cannot
drift apart; ``commit_args`` lays rows out in that order and refuses a
missing, unknown or misshapen section.
"""

from __future__ import annotations

import re
from importlib import resources

import pytest

from streams.store.scripts import (
    COMMIT_HEAD,
    COMMIT_SECTIONS,
    SCRIPTS,
    Row,
    commit_args,
    source,
)

HEAD_LINE = re.compile(r"^-- ARGV head: (.+)$", re.M)
# "--   name: col, col (a note)": two spaces of indent mark a section line.
SECTION_LINE = re.compile(r"^--   ([a-z_]+): ([a-z_, ]+?)(?: \(.*\))?$", re.M)


def header(text: str) -> str:
    """The leading comment block of a script."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


def declared_in_lua(text: str) -> tuple[tuple[str, ...], list[tuple[str, tuple[str, ...]]]]:
    """(head names, [(section, columns)]) as the script's header comment lists them."""
    block = header(text)
    head = HEAD_LINE.search(block)
    assert head is not None, "commit.lua's header lacks its 'ARGV head:' line"
    sections = [
        (name, tuple(c.strip() for c in columns.split(",")))
        for name, columns in SECTION_LINE.findall(block)
    ]
    return tuple(n.strip() for n in head.group(1).split(",")), sections


def test_scripts_are_the_shipped_files() -> None:
    folder = resources.files("streams.store").joinpath("lua")
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".lua")) == sorted(SCRIPTS)
    assert all(source(name).startswith("-- ") for name in SCRIPTS), "each opens with what it does"


def test_the_commit_header_lists_the_declared_head_and_sections() -> None:
    head, sections = declared_in_lua(source("commit.lua"))
    assert head == COMMIT_HEAD
    assert sections == [(s.name, s.columns) for s in COMMIT_SECTIONS]


def test_the_commit_script_reads_the_declared_widths_in_order() -> None:
    text = source("commit.lua")
    body = text[len(header(text)) :]
    # The sections start right after the head.
    assert re.search(rf"^local i = {len(COMMIT_HEAD) + 1}$", body, re.M)
    widths = [int(w) for w in re.findall(r"\bsection\((\d+)\)", body)]
    assert widths == [s.width for s in COMMIT_SECTIONS]


def test_the_header_check_can_fail() -> None:
    text = source("commit.lua").replace("--   kpis: field, increment", "--   kpis: field")
    _, sections = declared_in_lua(text)
    assert ("kpis", ("field",)) in sections
    assert sections != [(s.name, s.columns) for s in COMMIT_SECTIONS]


def rows(**given: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {s.name: [] for s in COMMIT_SECTIONS}
    out.update(given)
    return out


def test_commit_args_lay_out_the_head_then_every_section_counted_in_order() -> None:
    args = commit_args(
        ("p", "p:o", "p:f", 0, "1"),
        rows(writes=[("c-1", 3, b"{}", b"n")], device_signins=[("g", "c", 1), ("h", "c", 2)]),
    )
    assert args[:5] == ["p", "p:o", "p:f", 0, "1"]
    counts = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]
    assert len(counts) == len(COMMIT_SECTIONS)
    expected: list[object] = ["p", "p:o", "p:f", 0, "1"]
    for section, n in zip(COMMIT_SECTIONS, counts, strict=True):
        expected.append(n)
        if section.name == "writes":
            expected += ["c-1", 3, b"{}", b"n"]
        if section.name == "device_signins":
            expected += ["g", "c", 1, "h", "c", 2]
    assert args == expected


def test_commit_args_refuse_what_the_script_would_misread() -> None:
    head = ("p", "p:o", "p:f", 0, "1")
    with pytest.raises(ValueError, match="missing"):
        commit_args(head, {s.name: [] for s in COMMIT_SECTIONS[1:]})
    with pytest.raises(ValueError, match="unknown"):
        commit_args(head, rows(writez=[]))
    with pytest.raises(ValueError, match="a kpis row has 3 values, not 2"):
        commit_args(head, rows(kpis=[("carts_started:web", 1, "extra")]))
    with pytest.raises(ValueError, match="head"):
        commit_args(head[:4], rows())
