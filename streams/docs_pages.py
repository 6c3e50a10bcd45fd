"""The manual's pages that mirror code: hand-written prose around one generated table.

Each table is rendered from the code it describes (the settings model, the
key module, the route contract, the error codes), between two markers, so the
page cannot disagree with the code:
``make docs`` (``python -m streams.docs_pages``) rewrites the tables, and
``tests/docs/test_generated_pages.py`` fails while one is stale.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
END = "<!-- end: generated -->"


@dataclass(frozen=True)
class GeneratedPage:
    """A page of ``docs/`` whose table between the markers comes from ``source``."""

    name: str
    source: str
    table: Callable[[], str]

    @property
    def path(self) -> Path:
        """Where the page is."""
        return DOCS / self.name

    @property
    def begin(self) -> str:
        """The marker before the generated table."""
        return f"<!-- begin: generated from {self.source} by `make docs`; do not edit -->"

    def render(self, page: str) -> str:
        """``page`` with the text between the markers replaced by the current table."""
        head, found, rest = page.partition(self.begin)
        _, found_end, tail = rest.partition(END)
        if not (found and found_end):
            raise ValueError(f"{self.name} lacks the generated-table markers")
        return f"{head}{self.begin}\n{self.table()}{END}{tail}"

    def stale(self) -> bool:
        """Whether the page on disk differs from what the code renders."""
        page = self.path.read_text()
        return self.render(page) != page


def _configuration() -> str:
    from streams.settings_page import table

    return table()


def _redis_layout() -> str:
    from streams.store import keys

    return "Modules are named under `streams/`; `cont` is the default prefix.\n\n" + (
        keys.markdown()
    )


def _gateway_routes() -> str:
    from streams.gateway.openapi import document

    rows = ["| route | token | what | answers |", "|---|---|---|---|"]
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            roles = ", ".join(op["x-continuity-roles"]) or "none"
            if any("access_token" in s for s in op["security"]):
                roles += "; or `?access_token=`"
            statuses = ", ".join(s for s in op["responses"] if s not in ("405", "500"))
            rows.append(f"| `{method.upper()} {path}` | {roles} | {op['summary']} | {statuses} |")
    return "\n".join(rows) + "\n"


def _gateway_errors() -> str:
    from streams.gateway.errors import markdown_table

    return markdown_table()


# A page may hold several tables: each has its own markers, named by its source.
PAGES = (
    GeneratedPage("configuration.md", "streams/settings.py", _configuration),
    GeneratedPage("redis-layout.md", "streams/store/keys.py", _redis_layout),
    GeneratedPage("gateway-api.md", "streams/gateway/contract.py", _gateway_routes),
    GeneratedPage("gateway-api.md", "streams/gateway/errors.py", _gateway_errors),
)


def main(argv: list[str] | None = None) -> int:
    """Rewrite stale pages (``--check``: list them and exit 1, writing nothing)."""
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    stale = [p for p in PAGES if p.stale()]
    for page in stale:
        if check:
            print(f"stale: {page.path} (run make docs)", file=sys.stderr)
        else:
            page.path.write_text(page.render(page.path.read_text()))
            print(f"wrote {page.path}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
