"""The syntax half of network queries: Python's AST checked against the grammar of
:mod:`cca_scale.store.query`, and turned into a small tree of our own that the evaluator walks.
Nothing here evaluates anything.
"""

from __future__ import annotations

import ast
import io
import operator
import tokenize
from dataclasses import dataclass
from typing import Any, Callable, Union

from cca_scale.errors import InvalidQueryError

__all__ = ["And", "Attr", "COMPARISONS", "Choices", "Compare", "EXAMPLE", "Literal", "Not", "Or",
           "Truth", "Validator", "refuse", "rewrite_operators", "short"]

EXAMPLE = "a query compares attributes with literals, e.g. \"lr == 0.01 and labels == 'true'\"."

COMPARISONS: dict[type, tuple[str, Callable[[Any, Any], bool]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}

# What each refused node is called in messages (anything not listed: "<type> expressions").
REFUSED = {
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
    return InvalidQueryError(f"invalid query: {why}; {EXAMPLE}")


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


_Operand = Union[Attr, Literal]


@dataclass(frozen=True)
class Compare:
    """One comparison ``left op right``; ``op`` is '==', '!=', '<', '<=', '>', '>=', 'in',
    'not in'. A chain ``a < b < c`` becomes an ``And`` of two of these."""

    op: str
    left: _Operand
    right: Union[_Operand, Choices]


@dataclass(frozen=True)
class Truth:
    """A bare attribute as a condition: true where it holds ``True``."""

    attr: Attr


@dataclass(frozen=True)
class And:
    items: tuple


@dataclass(frozen=True)
class Or:
    items: tuple


@dataclass(frozen=True)
class Not:
    item: Any


# --------------------------------------------------------------------------------------------
# Parsing and validation.


def segment(text: str, node: ast.AST, limit: int = 60) -> str:
    """The source of ``node`` for a message (calls shortened to ``f(...)``)."""
    if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
        shown = f"{segment(text, node.func, limit)}(...)"
    else:
        shown = ast.get_source_segment(text, node) or type(node).__name__
    shown = " ".join(shown.split())
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def short(text: str, limit: int = 80) -> str:
    """``repr`` of a query for a message, shortened."""
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def rewrite_operators(text: str) -> str:
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


class Validator:
    """Turns a parsed expression into the validated tree, refusing everything else."""

    def __init__(self, text: str):
        self.text = text
        self.names: list[str] = []

    # -- conditions ---------------------------------------------------------------------------
    def condition(self, node: ast.AST):
        if isinstance(node, ast.BoolOp):
            items = tuple(self.condition(value) for value in node.values)
            return And(items) if isinstance(node.op, ast.And) else Or(items)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return Not(self.condition(node.operand))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name):
            return Truth(Attr(self.name(node)))
        if isinstance(node, (ast.Constant, ast.UnaryOp)):
            raise refuse(f"{segment(self.text, node)!r} is a value, not a condition")
        raise self.refused(node)

    def compare(self, node: ast.Compare):
        operands = [node.left, *node.comparators]
        parts = []
        for left_node, op, right_node in zip(operands, node.ops, operands[1:]):
            shown = segment(self.text, node)
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
            symbol = COMPARISONS[type(op)][0]
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
                raise refuse(f"{segment(self.text, left_node)} {symbol} "
                              f"{segment(self.text, right_node)} compares two literals; a "
                              "comparison needs an attribute name on one side")
            parts.append(Compare(symbol, left, right))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    # -- operands -----------------------------------------------------------------------------
    def name(self, node: ast.Name) -> str:
        if node.id.startswith("__") or node.id.endswith("__"):
            raise refuse(f"names with double underscores are not allowed ({node.id!r})")
        self.names.append(node.id)
        return node.id

    def operand(self, node: ast.AST) -> _Operand:
        if isinstance(node, ast.Name):
            return Attr(self.name(node))
        return Literal(self.literal(node))

    def literal(self, node: ast.AST):
        if isinstance(node, ast.Constant):
            value = node.value
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
            raise refuse(f"{type(value).__name__} literals are not allowed "
                          f"({segment(self.text, node)!r}); use numbers, strings, True, False "
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
            raise refuse(f"a list ({segment(self.text, node)!r}) is allowed only after 'in', "
                          "'not in', '==' or '!='")
        raise self.refused(node)

    def choices(self, node: ast.AST, op: str) -> Choices:
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise refuse(f"'{op}' takes a list of literals, e.g. labels {op} ['true', 'random'] "
                          f"(got {segment(self.text, node)!r})")
        return Choices(tuple(self.literal(element) for element in node.elts))

    def refused(self, node: ast.AST) -> InvalidQueryError:
        shown = segment(self.text, node)
        if isinstance(node, ast.BinOp):
            kind = ("bitwise operators" if isinstance(
                node.op, (ast.BitAnd, ast.BitOr, ast.BitXor, ast.LShift, ast.RShift))
                else "arithmetic operators")
            return refuse(f"{kind} are not allowed ({shown!r}); write the value itself")
        if isinstance(node, ast.UnaryOp):
            return refuse(f"{shown!r} is not allowed: '-' and '+' apply to number literals "
                           "only, 'not' / '~' to conditions")
        kind = REFUSED.get(type(node), f"{type(node).__name__} expressions")
        return refuse(f"{kind} are not allowed ({shown!r})")
