"""Translate a kernel FindQuery into one SQL statement, exact for every DICOM matching rule of isengard.query.

Constraints on the queried level or its ancestors join up the parent chain; constraints on descendants (the
Modality of a series in a study-level query) become EXISTS sub-queries down the tree. Case-insensitive
constraints compare the ``norm`` column, which holds :func:`isengard.query.normalize` of each value.
"""

from __future__ import annotations

from typing import Any

from isengard.model import ResourceType
from isengard.query import ConstraintKind, FindQuery, LabelsConstraint, OrderKey, TagConstraint


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _glob(pattern: str) -> str:
    return pattern.replace("[", "[[]")


class _Params:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f":{name}"


def _prefix_bounds(column: str, pattern: str, params: _Params) -> list[str]:
    """Index-friendly bounds for the literal prefix of a wildcard pattern ("BRO*" -> BRO <= value < BRP).

    They only narrow what GLOB/LIKE then check exactly: SQLite does not use an index for a bound parameter
    pattern by itself.
    """
    cut = min((i for i, ch in enumerate(pattern) if ch in "*?"), default=len(pattern))
    prefix = pattern[:cut]
    if not prefix or ord(prefix[-1]) >= 0x10FFFF:
        return []
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return [f"{column} >= {params.add(prefix)}", f"{column} < {params.add(upper)}"]


def _value_condition(c: TagConstraint, params: _Params) -> str:
    values = c.compared()
    if c.kind is ConstraintKind.RANGE:
        low, high = values
        bounds = [f"t.value >= {params.add(low)}"] if low else []
        bounds += [f"t.value <= {params.add(high)}"] if high else []
        return "(" + " AND ".join(bounds or ["1"]) + ")"
    column = "t.value" if c.case_sensitive else "t.norm"
    if c.kind is ConstraintKind.LIST:
        return f"{column} IN ({', '.join(params.add(v) for v in values)})"
    if c.kind is ConstraintKind.WILDCARD:
        if c.case_sensitive:
            match = f"{column} GLOB {params.add(_glob(values[0]))}"
        else:  # norm is upper-case on both sides, so the ASCII case folding of LIKE changes nothing
            match = f"{column} LIKE {params.add(_like(values[0]))} ESCAPE '\\'"
        return "(" + " AND ".join([*_prefix_bounds(column, values[0], params), match]) + ")"
    return f"{column} = {params.add(values[0])}"


def _tag_matches(alias: str, c: TagConstraint, params: _Params) -> str:
    """``alias`` is one of the resources whose tag matches: an uncorrelated sub-query, which SQLite answers from
    the (tag, value) index and can then drive the whole query from (a handful of rows out of millions)."""
    return (
        f"{alias}.id IN (SELECT t.resource_id FROM main_tags t "
        f"WHERE t.tag = {params.add(c.keyword)} AND {_value_condition(c, params)})"
    )


#: Tags whose exact value designates one or a few resources.
_IDENTIFYING = frozenset(
    {"PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "AccessionNumber", "StudyID"}
)


def _selectivity(c: TagConstraint) -> int:
    """A guess of how few resources a constraint keeps (lower: fewer), to pick the one that drives the query."""
    if c.kind in (ConstraintKind.EQUAL, ConstraintKind.LIST):
        return 0 if c.keyword in _IDENTIFYING else 1
    if c.kind is ConstraintKind.WILDCARD:
        return 2 if c.values[0][:1] not in ("*", "?") else 4
    return 3


def _tag_exists(alias: str, c: TagConstraint, params: _Params) -> str:
    return (
        f"EXISTS (SELECT 1 FROM main_tags t WHERE t.resource_id = {alias}.id "
        f"AND t.tag = {params.add(c.keyword)} AND {_value_condition(c, params)})"
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
    names = ", ".join(params.add(label) for label in query.labels)
    exists = f"EXISTS (SELECT 1 FROM labels l WHERE l.resource_id = r.id AND l.label IN ({names}))"
    return [exists if query.labels_constraint is LabelsConstraint.ANY else f"NOT {exists}"]


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
        # numbers: SQLite's CAST reads the leading number
        terms.append(f"CAST({value} AS REAL) {direction}" if key.numeric else f"{value} {direction}")
    return terms, joins


def _order_join(alias: str, key: OrderKey, level: ResourceType, params: _Params) -> str:
    if key.metadata is not None:
        return (
            f"LEFT JOIN metadata {alias} ON {alias}.resource_id = r.id AND {alias}.kind = {params.add(key.metadata)}"
        )
    owner = "r" if key.level == level else f"a{int(level) - int(key.level)}"
    return f"LEFT JOIN main_tags {alias} ON {alias}.resource_id = {owner}.id AND {alias}.tag = {params.add(key.tag)}"


def build_find(query: FindQuery) -> tuple[str, dict[str, Any]]:
    params = _Params()
    level = query.level
    joins: list[str] = []
    # "+r.level": no index on the level, so that SQLite starts from the constraints' matches, not from every
    # resource of the level (a study-level find on 100,000 instances went from 8 ms to well under 1 ms)
    where = [f"+r.level = {int(level)}"] if query.constraints else [f"r.level = {int(level)}"]
    highest = min((k.level for k in (*query.constraints, *query.order_by)), default=level)
    # aliases a1, a2... for the parent, grandparent...: created only as far up as a constraint needs
    for depth in range(1, int(level) - int(highest) + 1):
        below = "r" if depth == 1 else f"a{depth - 1}"
        joins.append(f"JOIN resources a{depth} ON a{depth}.id = {below}.parent_id")
    driver = min((c for c in query.constraints if c.level <= level), key=_selectivity, default=None)
    for c in query.constraints:
        if c.level <= level:
            alias = "r" if c.level == level else f"a{int(level) - int(c.level)}"
            # One constraint drives the query from its matches; the others are checked per candidate, since
            # materializing an unselective one (every CT series) costs more than probing it.
            where.append((_tag_matches if c is driver else _tag_exists)(alias, c, params))
        else:
            where.append(_descendant_exists("r", int(c.level) - int(level), c, params))
    where += _labels_condition(query, params)
    # Orthanc's order: instances as stored, the other levels by public identifier; after the OrderBy keys if any
    keys, order_joins = _order_by(query, params)
    order = ", ".join([*keys, "r.id" if level is ResourceType.INSTANCE else "r.public_id"])
    joins += order_joins
    sql = f"SELECT r.public_id FROM resources r {' '.join(joins)} WHERE {' AND '.join(where)} ORDER BY {order}"
    if query.limit is not None or query.since:
        sql += f" LIMIT {params.add(-1 if query.limit is None else query.limit)}"
        sql += f" OFFSET {params.add(query.since)}"
    return sql, params.values
