"""Network selection queries: parsed as data, never run as code.

``store.networks("lr == 0.01 and labels == 'true'")`` and the ``--networks``, ``--against`` and
``--query`` options select networks by their attributes. The text is parsed with Python's
:mod:`ast` (``mode="eval"``), checked against the small grammar below (both in
:mod:`cca_scale.store.query_parse`), and evaluated here, row by row over the attributes table.
Nothing in it is ever passed to ``eval``, ``compile``, ``pandas.DataFrame.query`` or
``pandas.eval``, so a query can read attribute values and nothing else: no functions, no Python
variables, no methods of the table.

Grammar
-------
A query is a condition::

    condition  := condition "and" condition | condition "or" condition | "not" condition
                | "(" condition ")" | comparison | NAME
    comparison := operand OP operand [OP operand ...]          (chained, as in Python)
                | NAME ["not"] "in" choices
                | NAME ("==" | "!=") choices                    (same as "in" / "not in")
    OP         := "==" | "!=" | "<" | "<=" | ">" | ">="
    operand    := NAME | literal
    choices    := "[" literal, ... "]" | "(" literal, ... ")" | "{" literal, ... "}"
    literal    := int | float | str | True | False | None | "-" number | "+" number

``NAME`` is an attribute (a column of :meth:`ActivationStore.attributes`) or ``network``, the
network id. Each comparison involves at least one ``NAME``. A bare ``NAME`` as a condition
selects the networks whose attribute is ``True`` (it must hold booleans).

``&``, ``|`` and ``~`` (the ``pandas.DataFrame.query`` spellings) are accepted as exact aliases of
``and``, ``or`` and ``not``, with the precedence of the words, as pandas gives them: ``lr == 0.01
& seed < 5`` means ``(lr == 0.01) and (seed < 5)``. They are never bitwise operations.

Everything else is refused with :class:`~cca_scale.errors.InvalidQueryError`, a message that
starts with ``invalid query:`` and says why: function calls, attribute access (``lr.to_csv``),
subscripts, ``@`` references to Python variables, arithmetic, lambdas, comprehensions,
f-strings, ``:=``, ``if``/``else`` expressions, names with double underscores, unknown
attributes (the message lists the known ones).

Values are compared as Python values, as pandas compares them: ``1 == 1.0``, ``'a' == 1`` is
false, and ordering a string against a number is an error that names the network and
attribute. A network without the attribute (a missing value, NaN or None in the table) is
never selected by ``==``, ``<``, ``<=``, ``>``, ``>=`` or ``in`` on it, even against ``None``;
``!=`` and ``not in`` are their exact negations, so they select it (as NaN does in pandas).
Missing values never raise.

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({"lr": [0.01, 0.1, 0.01], "labels": ["true", "true", "random"]},
...                      index=pd.Index(["n0", "n1", "n2"], name="network"))
>>> select(table, "lr == 0.01 and labels == 'true'")
['n0']
>>> select(table, "lr in [0.01, 0.1] and not network == 'n1'")
['n0', 'n2']
>>> select(table, "0.001 < lr < 0.05")
['n0', 'n2']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cca_scale.errors import InvalidQueryError
from cca_scale.store.query_parse import (
    EXAMPLE,
    OPERATORS,
    Attr,
    BoolOp,
    Not,
    Truth,
    parse_tree,
    refuse,
    short,
)

__all__ = ["QUERY_GRAMMAR", "Query", "parse_query", "select"]

#: One-paragraph summary of the query grammar, reused by the command-line help texts.
QUERY_GRAMMAR = (
    "a query compares attributes (and 'network', the id) with literals: ==, !=, <, <=, >, >= "
    "(chained too, e.g. 0.001 < lr < 0.1), 'in' / 'not in' a list of literals, combined with "
    "and/or/not (or &, |, ~) and parentheses; literals are numbers, 'strings', True, False, "
    "None. Nothing else (calls, @variables, arithmetic) is accepted: queries are data, never code"
)

#: Query text longer than this is refused before parsing (a selection is a line, not a file).
MAX_QUERY_LENGTH = 10_000


@dataclass(frozen=True)
class Query:
    """A validated network query; see the module docstring for the grammar.

    Build it with :func:`parse_query`. It holds no code, only the validated tree.

    Attributes
    ----------
    text : str
        The query as written.
    names : tuple of str
        The attribute names it refers to, in order of first appearance.
    """

    text: str
    names: tuple
    _tree: Any

    def mask(self, table) -> list[bool]:
        """Whether each row of ``table`` is selected, in table order.

        Parameters
        ----------
        table : pandas.DataFrame
            One row per network, indexed by network id (index name ``network``), one column
            per attribute, missing values NaN or None.

        Returns
        -------
        list of bool
            One entry per row.

        Raises
        ------
        InvalidQueryError
            A name is neither a column nor the index name (the message lists the columns), or
            two present values cannot be ordered (a string against a number).
        """
        columns = {str(c): c for c in table.columns}
        index_name = table.index.name or "network"
        unknown = [n for n in dict.fromkeys(self.names) if n not in columns and n != index_name]
        if unknown:
            known = ", ".join(repr(str(c)) for c in table.columns) or "none"
            raise InvalidQueryError(
                f"invalid query: unknown attribute {', '.join(map(repr, unknown))} in "
                f"{short(self.text)}. Available attribute columns: {known} (and the index "
                f"{index_name!r}). {EXAMPLE[0].upper()}{EXAMPLE[1:]}"
            )
        networks = [str(n) for n in table.index]
        values = {name: (table[columns[name]].tolist() if name in columns
                         else list(table.index))
                  for name in dict.fromkeys(self.names)}
        try:
            return [bool(_evaluate(self._tree, row, values, networks))
                    for row in range(len(networks))]
        except RecursionError:
            raise refuse("the query is nested too deeply") from None

    def select(self, table) -> list[str]:
        """The ids (index values) of the rows of ``table`` the query selects, in table order."""
        return [name for name, keep in zip(table.index, self.mask(table)) if keep]


def parse_query(text: str) -> Query:
    """Parse and validate a network query without evaluating it.

    Parameters
    ----------
    text : str
        The query, e.g. ``"lr == 0.01 and labels == 'true'"``. Grammar: module docstring.

    Returns
    -------
    Query
        The validated query; :meth:`Query.select` applies it to an attributes table.

    Raises
    ------
    InvalidQueryError
        The text is not a query of the grammar; the message says which part and why.
    """
    if not isinstance(text, str):
        raise InvalidQueryError(
            f"invalid query: a query must be a str. Got {type(text).__name__} instead."
        )
    if not text.strip():
        raise refuse("the query is empty")
    if len(text) > MAX_QUERY_LENGTH:
        raise refuse(f"the query is {len(text)} characters long; the limit is "
                     f"{MAX_QUERY_LENGTH}")
    tree, names = parse_tree(text)
    return Query(text=text, names=names, _tree=tree)


def select(table, query: str) -> list[str]:
    """The network ids of ``table`` that ``query`` selects, in table order.

    Parameters
    ----------
    table : pandas.DataFrame
        Network attributes, as :meth:`ActivationStore.attributes` returns them.
    query : str
        A query of the grammar in this module's docstring.

    Returns
    -------
    list of str
        Index values of the selected rows, in table order.

    Raises
    ------
    InvalidQueryError
        The query is outside the grammar or names an unknown attribute.

    See Also
    --------
    parse_query : validate a query without a table.
    """
    return parse_query(query).select(table)


# --------------------------------------------------------------------------------------------
# Evaluation over plain Python values.


def _missing(value: Any) -> bool:
    """NaN, None, ``pandas.NA`` or ``NaT``: the network has no such attribute."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    from pandas import isna
    from pandas.api.types import is_scalar

    return bool(is_scalar(value) and isna(value))


def _value(operand, row: int, values: dict[str, list]):
    return values[operand.name][row] if isinstance(operand, Attr) else operand.value


def _evaluate(node, row: int, values: dict[str, list], networks: list[str]) -> bool:
    if isinstance(node, BoolOp):
        combine = all if node.op == "and" else any
        return combine(_evaluate(item, row, values, networks) for item in node.items)
    if isinstance(node, Not):
        return not _evaluate(node.item, row, values, networks)
    if isinstance(node, Truth):
        value = values[node.attr.name][row]
        if _missing(value):
            return False
        import numpy as np

        if not isinstance(value, (bool, np.bool_)):
            raise InvalidQueryError(
                f"invalid query: attribute {node.attr.name!r} is used as a condition, but "
                f"network {networks[row]!r} holds {value!r}, not True or False; compare it "
                f"instead, e.g. {node.attr.name} == {value!r}."
            )
        return bool(value)
    # Compare
    left = _value(node.left, row, values)
    negated = node.op in ("!=", "not in")
    if node.op in ("in", "not in"):
        if _missing(left):
            return negated
        found = any(not _missing(choice) and left == choice for choice in node.right.values)
        return found != negated
    right = _value(node.right, row, values)
    if _missing(left) or _missing(right):
        return negated
    try:
        return bool(OPERATORS[node.op](left, right))
    except TypeError:
        raise InvalidQueryError(
            f"invalid query: cannot compare {_shown(node.left, left)} {node.op} "
            f"{_shown(node.right, right)} for network {networks[row]!r}; order strings with "
            "strings and numbers with numbers."
        ) from None


def _shown(operand, value) -> str:
    kind = type(value).__name__
    if isinstance(operand, Attr):
        return f"{operand.name} ({value!r}, a {kind})"
    return f"{value!r} (a {kind})"
