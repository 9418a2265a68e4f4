"""Query text to a validated tree of plain dataclasses; everything outside the grammar refused.

The grammar is in :mod:`cca_scale.store.query`. The text is tokenized (pandas' ``&`` and ``|``
become ``and`` and ``or``; ``@`` is refused), parsed with :func:`ast.parse` in ``eval`` mode and
walked by a validator that builds the tree below and refuses every other node with an
:class:`~cca_scale.errors.InvalidQueryError` that says which part and why. Nothing is ever
compiled or run: evaluation (:meth:`cca_scale.store.query.Query.mask`) walks only this tree.
"""

from __future__ import annotations

import ast
import io
import operator
import tokenize
from dataclasses import dataclass
from typing import Any, Callable, Union

from cca_scale.errors import InvalidQueryError

__all__ = ["EXAMPLE", "OPERATORS", "Attr", "BoolOp", "Choices", "Compare", "Literal", "Not",
           "Truth", "parse_tree", "refuse", "short"]

#: The example every refusal ends with.
EXAMPLE = "a query compares attributes with literals, e.g. \"lr == 0.01 and labels == 'true'\"."

_COMPARISONS: dict[type, tuple[str, Callable[[Any, Any], bool]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}

#: The comparison functions by symbol, for evaluation.
OPERATORS = {symbol: function for symbol, function in _COMPARISONS.values()}

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


def refuse(why: str) -> InvalidQueryError:
    """The error for a query refused because of ``why``."""
    return InvalidQueryError(f"invalid query: {why}; {EXAMPLE}")


def short(text: str, limit: int = 80) -> str:
    """``repr`` of a query for a message, shortened."""
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# --------------------------------------------------------------------------------------------
# The validated tree. Evaluation walks only these classes, never the Python AST.


@dataclass(frozen=True)
class Attr:
    name: str


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Choices:
    values: tuple


Operand = Union[Attr, Literal]


@dataclass(frozen=True)
class Compare:
    """One comparison ``left op right``; ``op`` is '==', '!=', '<', '<=', '>', '>=', 'in',
    'not in'. A chain ``a < b < c`` becomes a ``BoolOp('and', ...)`` of two of these."""

    op: str
    left: Operand
    right: Union[Operand, Choices]


@dataclass(frozen=True)
class Truth:
    """A bare attribute as a condition: true where it holds ``True``."""

    attr: Attr


@dataclass(frozen=True)
class BoolOp:
    """``and`` / ``or`` (``op``) of two or more conditions."""

    op: str
    items: tuple


@dataclass(frozen=True)
class Not:
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
            raise refuse(
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
            return BoolOp("and" if isinstance(node.op, ast.And) else "or", items)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return Not(self.condition(node.operand))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name):
            return Truth(Attr(self.name(node)))
        if isinstance(node, (ast.Constant, ast.UnaryOp)):
            raise refuse(f"{_segment(self.text, node)!r} is a value, not a condition")
        raise self.refused(node)

    def compare(self, node: ast.Compare):
        operands = [node.left, *node.comparators]
        parts = []
        for left_node, op, right_node in zip(operands, node.ops, operands[1:]):
            shown = _segment(self.text, node)
            if isinstance(op, (ast.In, ast.NotIn)):
                if len(node.ops) > 1:
                    raise refuse(f"'in' cannot be chained with other comparisons ({shown!r}); "
                                 "combine them with 'and'")
                name = "in" if isinstance(op, ast.In) else "not in"
                if not isinstance(left_node, ast.Name):
                    raise refuse(f"the left side of '{name}' must be an attribute name "
                                 f"({shown!r})")
                parts.append(Compare(name, Attr(self.name(left_node)),
                                      self.choices(right_node, name)))
                continue
            if isinstance(op, (ast.Is, ast.IsNot)):
                raise refuse(f"'is' comparisons are not allowed ({shown!r}); use == or !=")
            symbol = _COMPARISONS[type(op)][0]
            if symbol in ("==", "!=") and isinstance(right_node, (ast.List, ast.Tuple, ast.Set)):
                if len(node.ops) > 1 or not isinstance(left_node, ast.Name):
                    raise refuse(f"a list of values is compared only as 'NAME {symbol} [...]' "
                                 f"({shown!r})")
                parts.append(Compare("in" if symbol == "==" else "not in",
                                      Attr(self.name(left_node)),
                                      self.choices(right_node, symbol)))
                continue
            left, right = self.operand(left_node), self.operand(right_node)
            if not (isinstance(left, Attr) or isinstance(right, Attr)):
                raise refuse(f"{_segment(self.text, left_node)} {symbol} "
                             f"{_segment(self.text, right_node)} compares two literals; a "
                             "comparison needs an attribute name on one side")
            parts.append(Compare(symbol, left, right))
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    # -- operands -----------------------------------------------------------------------------
    def name(self, node: ast.Name) -> str:
        if node.id.startswith("__") or node.id.endswith("__"):
            raise refuse(f"names with double underscores are not allowed ({node.id!r})")
        self.names.append(node.id)
        return node.id

    def operand(self, node: ast.AST) -> Operand:
        if isinstance(node, ast.Name):
            return Attr(self.name(node))
        return Literal(self.literal(node))

    def literal(self, node: ast.AST):
        if isinstance(node, ast.Constant):
            value = node.value
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
            raise refuse(f"{type(value).__name__} literals are not allowed "
                         f"({_segment(self.text, node)!r}); use numbers, strings, True, False "
                         "or None")
        if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
                and isinstance(node.operand, ast.Constant)
                and isinstance(node.operand.value, (int, float))
                and not isinstance(node.operand.value, bool)):
            value = node.operand.value
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Name):
            raise refuse(f"a list of values holds literals only, not names ({node.id!r}); "
                         f"quote a string: {node.id!r}")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise refuse(f"a list ({_segment(self.text, node)!r}) is allowed only after 'in', "
                         "'not in', '==' or '!='")
        raise self.refused(node)

    def choices(self, node: ast.AST, op: str) -> Choices:
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise refuse(f"'{op}' takes a list of literals, e.g. labels {op} ['true', 'random'] "
                         f"(got {_segment(self.text, node)!r})")
        return Choices(tuple(self.literal(element) for element in node.elts))

    def refused(self, node: ast.AST) -> InvalidQueryError:
        shown = _segment(self.text, node)
        if isinstance(node, ast.BinOp):
            kind = ("bitwise operators" if isinstance(
                node.op, (ast.BitAnd, ast.BitOr, ast.BitXor, ast.LShift, ast.RShift))
                else "arithmetic operators")
            return refuse(f"{kind} are not allowed ({shown!r}); write the value itself")
        if isinstance(node, ast.UnaryOp):
            return refuse(f"{shown!r} is not allowed: '-' and '+' apply to number literals "
                          "only, 'not' / '~' to conditions")
        kind = _REFUSED.get(type(node), f"{type(node).__name__} expressions")
        return refuse(f"{kind} are not allowed ({shown!r})")


def parse_tree(text: str) -> tuple[Any, tuple]:
    """``(tree, names)`` of a query text: the validated tree and the attribute names it refers
    to, in order of first appearance. InvalidQueryError for anything outside the grammar."""
    try:
        source = _rewrite_operators(text.strip())
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError as exc:
            where = f" at character {exc.offset}" if exc.offset else ""
            raise refuse(f"Could not evaluate the network query {short(text)}: it is not a valid "
                         f"expression ({exc.msg}{where})") from None
        validator = _Validator(source)
        validated = validator.condition(tree.body)
    except (RecursionError, MemoryError):
        raise refuse("the query is nested too deeply") from None
    return validated, tuple(dict.fromkeys(validator.names))
