"""Network selection queries: parsed as data, never run as code.

``store.networks("lr == 0.01 and labels == 'true'")`` and the ``--networks``, ``--against`` and
``--query`` options select networks by their attributes. The text is parsed with Python's
:mod:`ast` (``mode="eval"``), checked against the small grammar below, and evaluated here, row by
row over the attributes table. Nothing in it is ever passed to ``eval``, ``compile``,
``pandas.DataFrame.query`` or ``pandas.eval``, so a query can read attribute values and nothing
else: no functions, no Python variables, no methods of the table.

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

import ast
import io
import math
import operator
import tokenize
from dataclasses import dataclass
from typing import Any, Callable, Union

from cca_scale.errors import InvalidQueryError

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

_EXAMPLE = "a query compares attributes with literals, e.g. \"lr == 0.01 and labels == 'true'\"."

_COMPARISONS: dict[type, tuple[str, Callable[[Any, Any], bool]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}

# What each refused node is called in messages (anything not listed: "<type> expressions").
_REFUSED = {
    ast.Call: "function calls",
    ast.Attribute: "attribute access (a '.' after a name)",
    ast.Subscript: "subscripts ('[...]' after a name)",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings",
    ast.NamedExpr: "assignment expressions (':=')",
    ast.IfExp: "'if'/'else' expressions",
    ast.Starred: "starred expressions ('*')",
    ast.Dict: "dicts",
    ast.Slice: "slices",
    ast.Await: "'await'",
    ast.Yield: "'yield'",
    ast.YieldFrom: "'yield'",
}


def _refuse(why: str) -> InvalidQueryError:
    return InvalidQueryError(f"invalid query: {why}; {_EXAMPLE}")


# --------------------------------------------------------------------------------------------
# The validated tree. Evaluation walks only these classes, never the Python AST.


@dataclass(frozen=True)
class _Attr:
    name: str


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _Choices:
    values: tuple


_Operand = Union[_Attr, _Literal]


@dataclass(frozen=True)
class _Compare:
    """One comparison ``left op right``; ``op`` is '==', '!=', '<', '<=', '>', '>=', 'in',
    'not in'. A chain ``a < b < c`` becomes an ``_And`` of two of these."""

    op: str
    left: _Operand
    right: Union[_Operand, _Choices]


@dataclass(frozen=True)
class _Truth:
    """A bare attribute as a condition: true where it holds ``True``."""

    attr: _Attr


@dataclass(frozen=True)
class _And:
    items: tuple


@dataclass(frozen=True)
class _Or:
    items: tuple


@dataclass(frozen=True)
class _Not:
    item: Any


# --------------------------------------------------------------------------------------------
# Parsing and validation.


def _segment(text: str, node: ast.AST, limit: int = 60) -> str:
    """The source of ``node`` for a message (calls shortened to ``f(...)``)."""
    if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
        shown = f"{_segment(text, node.func, limit)}(...)"
    else:
        shown = ast.get_source_segment(text, node) or type(node).__name__
    shown = " ".join(shown.split())
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _short(text: str, limit: int = 80) -> str:
    """``repr`` of a query for a message, shortened."""
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _rewrite_operators(text: str) -> str:
    """Refuse '@' references and spell pandas' ``&`` / ``|`` as `` and `` / `` or ``.

    Works on Python tokens, so an ``&`` or ``@`` inside a string literal is left alone. Text the
    tokenizer cannot read is returned unchanged (``ast.parse`` then reports the syntax error).
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return text
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    replace = []
    for token in tokens:
        if token.type != tokenize.OP:
            continue
        if token.string in ("@", "@="):
            raise _refuse(
                "'@' references to Python variables are not allowed (pandas' '@name' syntax); "
                "write the value itself, e.g. lr == 0.01"
            )
        if token.string in ("&", "|"):
            row, col = token.start
            replace.append((starts[row - 1] + col, " and " if token.string == "&" else " or "))
    for offset, word in reversed(replace):
        text = text[:offset] + word + text[offset + 1:]
    return text


class _Validator:
    """Turns a parsed expression into the validated tree, refusing everything else."""

    def __init__(self, text: str):
        self.text = text
        self.names: list[str] = []

    # -- conditions ---------------------------------------------------------------------------
    def condition(self, node: ast.AST):
        if isinstance(node, ast.BoolOp):
            items = tuple(self.condition(value) for value in node.values)
            return _And(items) if isinstance(node.op, ast.And) else _Or(items)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return _Not(self.condition(node.operand))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name):
            return _Truth(_Attr(self.name(node)))
        if isinstance(node, (ast.Constant, ast.UnaryOp)):
            raise _refuse(f"{_segment(self.text, node)!r} is a value, not a condition")
        raise self.refused(node)

    def compare(self, node: ast.Compare):
        operands = [node.left, *node.comparators]
        parts = []
        for left_node, op, right_node in zip(operands, node.ops, operands[1:]):
            shown = _segment(self.text, node)
            if isinstance(op, (ast.In, ast.NotIn)):
                if len(node.ops) > 1:
                    raise _refuse(f"'in' cannot be chained with other comparisons ({shown!r}); "
                                  "combine them with 'and'")
                name = "in" if isinstance(op, ast.In) else "not in"
                if not isinstance(left_node, ast.Name):
                    raise _refuse(f"the left side of '{name}' must be an attribute name "
                                  f"({shown!r})")
                parts.append(_Compare(name, _Attr(self.name(left_node)),
                                      self.choices(right_node, name)))
                continue
            if isinstance(op, (ast.Is, ast.IsNot)):
                raise _refuse(f"'is' comparisons are not allowed ({shown!r}); use == or !=")
            symbol = _COMPARISONS[type(op)][0]
            if symbol in ("==", "!=") and isinstance(right_node, (ast.List, ast.Tuple, ast.Set)):
                if len(node.ops) > 1 or not isinstance(left_node, ast.Name):
                    raise _refuse(f"a list of values is compared only as 'NAME {symbol} [...]' "
                                  f"({shown!r})")
                parts.append(_Compare("in" if symbol == "==" else "not in",
                                      _Attr(self.name(left_node)),
                                      self.choices(right_node, symbol)))
                continue
            left, right = self.operand(left_node), self.operand(right_node)
            if not (isinstance(left, _Attr) or isinstance(right, _Attr)):
                raise _refuse(f"{_segment(self.text, left_node)} {symbol} "
                              f"{_segment(self.text, right_node)} compares two literals; a "
                              "comparison needs an attribute name on one side")
            parts.append(_Compare(symbol, left, right))
        return parts[0] if len(parts) == 1 else _And(tuple(parts))

    # -- operands -----------------------------------------------------------------------------
    def name(self, node: ast.Name) -> str:
        if node.id.startswith("__") or node.id.endswith("__"):
            raise _refuse(f"names with double underscores are not allowed ({node.id!r})")
        self.names.append(node.id)
        return node.id

    def operand(self, node: ast.AST) -> _Operand:
        if isinstance(node, ast.Name):
            return _Attr(self.name(node))
        return _Literal(self.literal(node))

    def literal(self, node: ast.AST):
        if isinstance(node, ast.Constant):
            value = node.value
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
            raise _refuse(f"{type(value).__name__} literals are not allowed "
                          f"({_segment(self.text, node)!r}); use numbers, strings, True, False "
                          "or None")
        if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
                and isinstance(node.operand, ast.Constant)
                and isinstance(node.operand.value, (int, float))
                and not isinstance(node.operand.value, bool)):
            value = node.operand.value
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Name):
            raise _refuse(f"a list of values holds literals only, not names ({node.id!r}); "
                          f"quote a string: {node.id!r}")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise _refuse(f"a list ({_segment(self.text, node)!r}) is allowed only after 'in', "
                          "'not in', '==' or '!='")
        raise self.refused(node)

    def choices(self, node: ast.AST, op: str) -> _Choices:
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise _refuse(f"'{op}' takes a list of literals, e.g. labels {op} ['true', 'random'] "
                          f"(got {_segment(self.text, node)!r})")
        return _Choices(tuple(self.literal(element) for element in node.elts))

    def refused(self, node: ast.AST) -> InvalidQueryError:
        shown = _segment(self.text, node)
        if isinstance(node, ast.BinOp):
            kind = ("bitwise operators" if isinstance(
                node.op, (ast.BitAnd, ast.BitOr, ast.BitXor, ast.LShift, ast.RShift))
                else "arithmetic operators")
            return _refuse(f"{kind} are not allowed ({shown!r}); write the value itself")
        if isinstance(node, ast.UnaryOp):
            return _refuse(f"{shown!r} is not allowed: '-' and '+' apply to number literals "
                           "only, 'not' / '~' to conditions")
        kind = _REFUSED.get(type(node), f"{type(node).__name__} expressions")
        return _refuse(f"{kind} are not allowed ({shown!r})")


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
                f"{_short(self.text)}. Available attribute columns: {known} (and the index "
                f"{index_name!r}). {_EXAMPLE[0].upper()}{_EXAMPLE[1:]}"
            )
        networks = [str(n) for n in table.index]
        values = {name: (table[columns[name]].tolist() if name in columns
                         else list(table.index))
                  for name in dict.fromkeys(self.names)}
        try:
            return [bool(_evaluate(self._tree, row, values, networks))
                    for row in range(len(networks))]
        except RecursionError:
            raise _refuse("the query is nested too deeply") from None

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
        raise _refuse("the query is empty")
    if len(text) > MAX_QUERY_LENGTH:
        raise _refuse(f"the query is {len(text)} characters long; the limit is "
                      f"{MAX_QUERY_LENGTH}")
    try:
        source = _rewrite_operators(text.strip())
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError as exc:
            where = f" at character {exc.offset}" if exc.offset else ""
            raise _refuse(f"Could not evaluate the network query {_short(text)}: it is not a valid "
                          f"expression ({exc.msg}{where})") from None
        validator = _Validator(source)
        validated = validator.condition(tree.body)
    except (RecursionError, MemoryError):
        raise _refuse("the query is nested too deeply") from None
    return Query(text=text, names=tuple(dict.fromkeys(validator.names)), _tree=validated)


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
    return values[operand.name][row] if isinstance(operand, _Attr) else operand.value


def _evaluate(node, row: int, values: dict[str, list], networks: list[str]) -> bool:
    if isinstance(node, _And):
        return all(_evaluate(item, row, values, networks) for item in node.items)
    if isinstance(node, _Or):
        return any(_evaluate(item, row, values, networks) for item in node.items)
    if isinstance(node, _Not):
        return not _evaluate(node.item, row, values, networks)
    if isinstance(node, _Truth):
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
    # _Compare
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
        return bool(_COMPARISONS_BY_SYMBOL[node.op](left, right))
    except TypeError:
        raise InvalidQueryError(
            f"invalid query: cannot compare {_shown(node.left, left)} {node.op} "
            f"{_shown(node.right, right)} for network {networks[row]!r}; order strings with "
            "strings and numbers with numbers."
        ) from None


_COMPARISONS_BY_SYMBOL = {symbol: function for symbol, function in _COMPARISONS.values()}


def _shown(operand, value) -> str:
    kind = type(value).__name__
    if isinstance(operand, _Attr):
        return f"{operand.name} ({value!r}, a {kind})"
    return f"{value!r} (a {kind})"
