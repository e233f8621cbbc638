"""Translate a kernel FindQuery into one PostgreSQL statement, exact for every DICOM matching rule of
isengard.query, with the same structure as the SQLite plugin's (joins up the parent chain for ancestors' tags,
EXISTS sub-queries down the tree for descendants' tags).

Differences that matter for speed:

- the tag keyword is written into the statement as a literal, so that the planner can prove that the partial
  trigram index (schema.WILDCARD_TAGS) covers a wildcard constraint, even with asyncpg's prepared statements;
- equalities, lists and ranges also compare ``left(column, INDEXED_PREFIX)``, the expression the B-tree indexes
  hold; the comparison of the whole value keeps the answer exact.
"""

from __future__ import annotations

from typing import Any

from isengard.model import ResourceType
from isengard.query import ConstraintKind, FindQuery, LabelsConstraint, OrderKey, TagConstraint

from .schema import INDEXED_PREFIX


def like_pattern(pattern: str) -> str:
    """A DICOM wildcard pattern as a LIKE pattern (backslash escapes; LIKE is case-sensitive in PostgreSQL)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _literal(keyword: str) -> str:
    return "'" + keyword.replace("'", "''") + "'"


class _Params:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _compare(column: str, op: str, placeholder: str) -> str:
    """``column op value``, preceded by the same comparison of the indexed prefixes, which a B-tree answers.

    Truncation keeps the order of C-collated strings (a <= b implies left(a, n) <= left(b, n)), so the prefix
    comparison never drops a row that the exact one keeps.
    """
    prefix = f"left({column}, {INDEXED_PREFIX})"
    return f"{prefix} {op} left({placeholder}::text, {INDEXED_PREFIX}) AND {column} {op} {placeholder}"


def _value_condition(c: TagConstraint, params: _Params) -> str:
    values = c.compared()
    if c.kind is ConstraintKind.RANGE:
        low, high = values
        bounds = [_compare("t.value", ">=", params.add(low))] if low else []
        bounds += [_compare("t.value", "<=", params.add(high))] if high else []
        return "(" + " AND ".join(bounds or ["TRUE"]) + ")"
    column = "t.value" if c.case_sensitive else "t.norm"
    if c.kind is ConstraintKind.LIST:
        prefixes, whole = params.add([v[:INDEXED_PREFIX] for v in values]), params.add(list(values))
        return f"left({column}, {INDEXED_PREFIX}) = ANY({prefixes}::text[]) AND {column} = ANY({whole}::text[])"
    if c.kind is ConstraintKind.WILDCARD:
        return f"{column} LIKE {params.add(like_pattern(values[0]))}"
    return _compare(column, "=", params.add(values[0]))


def _tag_exists(alias: str, c: TagConstraint, params: _Params) -> str:
    return (
        f"EXISTS (SELECT 1 FROM main_tags t WHERE t.resource_id = {alias}.id "
        f"AND t.tag = {_literal(c.keyword)} AND {_value_condition(c, params)})"
    )


def _descendant_exists(alias: str, depth: int, c: TagConstraint, params: _Params) -> str:
    """A descendant ``depth`` levels below ``alias`` carries a matching tag."""
    inner = _tag_exists(f"d{depth}", c, params)
    for d in range(depth, 0, -1):
        parent = alias if d == 1 else f"d{d - 1}"
        inner = f"EXISTS (SELECT 1 FROM resources d{d} WHERE d{d}.parent_id = {parent}.id AND {inner})"
    return inner


def _labels_condition(query: FindQuery, params: _Params) -> list[str]:
    if not query.labels:
        return []
    if query.labels_constraint is LabelsConstraint.ALL:
        return [
            f"EXISTS (SELECT 1 FROM labels l WHERE l.resource_id = r.id AND l.label = {params.add(label)})"
            for label in query.labels
        ]
    names = params.add(list(query.labels))
    exists = f"EXISTS (SELECT 1 FROM labels l WHERE l.resource_id = r.id AND l.label = ANY({names}::text[]))"
    return [exists if query.labels_constraint is LabelsConstraint.ANY else f"NOT {exists}"]


_LEADING_NUMBER = r"'^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)'"


def _order_by(query: FindQuery, params: _Params) -> tuple[list[str], list[str]]:
    """ORDER BY terms and the LEFT JOINs they read, for the OrderBy keys (see :class:`isengard.query.OrderKey`)."""
    terms: list[str] = []
    joins: list[str] = []
    for i, key in enumerate(query.order_by):
        o = f"o{i}"
        joins.append(_order_join(o, key, query.level, params))
        value = f"{o}.value"
        direction = "DESC" if key.descending else "ASC"
        terms.append(f"({value} IS NOT NULL) {direction}")  # missing first when ascending, in both databases
        if key.numeric:  # the leading number (none: 0), as SQLite's CAST reads it
            terms.append(f"COALESCE(substring({value} FROM {_LEADING_NUMBER})::float8, 0) {direction}")
        else:  # code points, as SQLite compares, whatever the database's collation
            terms.append(f'{value} COLLATE "C" {direction}')
    return terms, joins


def _order_join(alias: str, key: OrderKey, level: ResourceType, params: _Params) -> str:
    if key.metadata is not None:
        return (
            f"LEFT JOIN metadata {alias} ON {alias}.resource_id = r.id AND {alias}.kind = {params.add(key.metadata)}"
        )
    owner = "r" if key.level == level else f"a{int(level) - int(key.level)}"
    return f"LEFT JOIN main_tags {alias} ON {alias}.resource_id = {owner}.id AND {alias}.tag = {params.add(key.tag)}"


def build_find(query: FindQuery) -> tuple[str, list[Any]]:
    params = _Params()
    level = query.level
    joins: list[str] = []
    where = [f"r.level = {int(level)}"]
    highest = min((k.level for k in (*query.constraints, *query.order_by)), default=level)
    # aliases a1, a2... for the parent, grandparent...: created only as far up as a constraint needs
    for depth in range(1, int(level) - int(highest) + 1):
        below = "r" if depth == 1 else f"a{depth - 1}"
        joins.append(f"JOIN resources a{depth} ON a{depth}.id = {below}.parent_id")
    for c in query.constraints:
        if c.level == level:
            where.append(_tag_exists("r", c, params))
        elif c.level < level:
            where.append(_tag_exists(f"a{int(level) - int(c.level)}", c, params))
        else:
            where.append(_descendant_exists("r", int(c.level) - int(level), c, params))
    where += _labels_condition(query, params)
    # Orthanc's order: instances as stored, the other levels by public identifier; after the OrderBy keys if any
    keys, order_joins = _order_by(query, params)
    order = ", ".join([*keys, "r.id" if level is ResourceType.INSTANCE else "r.public_id"])
    joins += order_joins
    sql = f"SELECT r.public_id FROM resources r {' '.join(joins)} WHERE {' AND '.join(where)} ORDER BY {order}"
    if query.limit is not None or query.since:
        sql += f" LIMIT {params.add(query.limit)}::bigint OFFSET {params.add(query.since)}::bigint"
    return sql, params.values
