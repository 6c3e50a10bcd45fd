"""Reading Prometheus exposition text and PromQL in tests.

Samples are parsed with prometheus-client's own parser. PromQL has no Python
parser, so :func:`promql_metric_names` strips what cannot be a metric name
(strings, label matchers, ranges, grouping clauses, function calls, keywords,
numbers and dashboard variables) and keeps the identifiers that are left.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

Series = tuple[str, frozenset[tuple[str, str]]]

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.$:])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN", "start", "end"}
    | {"by", "without", "on", "ignoring", "group_left", "group_right"}
)
_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


def samples(text: str) -> dict[Series, float]:
    """Every sample of an exposition: (name, labels) -> value."""
    out: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(values: dict[Series, float], name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in values.items() if n == name and want <= lab)


def exported_names(text: str) -> set[str]:
    """The series names an exposition offers, including families with no sample yet."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            suffixes = _SUFFIXES.get(kind.strip(), ("",))  # a histogram has no bare series
            names.update(name + suffix for suffix in suffixes)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = _STRINGS.sub(" ", expr)
    for pattern in (_MATCHERS, _RANGES, _GROUPING):
        while True:  # innermost first, until nothing nested is left
            stripped = pattern.sub(" ", text)
            if stripped == text:
                break
            text = stripped
    return {m for m in _IDENT.findall(text) if m not in _KEYWORDS}


def names_in(exprs: Iterable[str]) -> set[str]:
    """:func:`promql_metric_names` over many expressions."""
    return {name for expr in exprs for name in promql_metric_names(expr)}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        sname, _, rest = series.partition("{")
        if sname != name:
            continue
        got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
        if got == want:
            return float(value)
    return 0.0


async def scrape(port: int) -> str:
    """GET /metrics from a worker on 127.0.0.1."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    body = await reader.read()
    writer.close()
    await writer.wait_closed()
    return body.split(b"\r\n\r\n", 1)[1].decode()
