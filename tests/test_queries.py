"""Network queries are data, never code (``cca_scale/store/query.py``).

Hostile queries are refused with InvalidQueryError through every door (``select``,
``store.networks``, ``compare`` before any cluster, the CLI), and their payloads never run (a
canary file is never written). Valid queries select what ``pandas.DataFrame.query`` selects on the
same table; pandas is only the reference here, the library never calls it on user text.
"""

import builtins
import importlib
import time

import numpy as np
import pandas as pd
import pytest

import cca_scale
from cca_scale import ActivationStore
from cca_scale.cli.common import _ID_LIST, SELECTION_HELP, parse_selection
from cca_scale.cli.main import build_parser, main
from cca_scale.errors import InvalidQueryError, StoreError
from cca_scale.store.query import MAX_QUERY_LENGTH, QUERY_GRAMMAR, parse_query, select

N = 40
LAYER = "l"

# Each payload would write the canary file if it were ever run. "{canary}" is filled per test.
HOSTILE = [
    "@os.system('touch {canary}')",
    "lr == @os.system('touch {canary}')",
    "lr.to_csv('{canary}') != 1",
    "lr.to_csv('{canary}')",
    "__import__('os').system('touch {canary}') == 0",
    "open('{canary}', 'w') == lr",
    "exec(\"open('{canary}', 'w')\")",
    "__class__ == 1",
    "lr.__class__ == 1",
    "__builtins__ == 1",
    "lr[0] == 1",
    "labels['{canary}'] == 1",
    "(lambda: open('{canary}', 'w'))() == 1",
    "[open('{canary}', 'w') for x in [1]] == lr",
    "{{x: open('{canary}', 'w') for x in [1]}} == lr",
    "f\"{{open('{canary}', 'w')}}\" == labels",
    "(x := open('{canary}', 'w')) == lr",
    "lr + 1 == 2",
    "lr * 10 > 0",
    "-lr < 0",
    "lr ** 2 < 1",
    "seed // 2 == 1",
    "lr ^ 1 == 0",
    "lr << 1 == 0",
    "lr @ lr",
    "lr if True else seed",
    "lr == (1 if True else 2)",
    "lr in [open('{canary}', 'w')]",
    "lr in labels",
    "lr in [seed]",
    "lr is None",
    "lr == 1j",
    "labels == b'x'",
    "lr == ...",
    "{{'a': 1}} == lr",
    "lr == [*labels]",
    "lr",  # a bare non-boolean attribute is not a condition
    "True",
    "1 == 1",
    "lr ==",
    "",
    "   ",
    "not " * 2400 + "flag",
    "(" * 300 + "flag" + ")" * 300,
    "x" * (MAX_QUERY_LENGTH + 1),
]


def _hostile_ids():
    return [q[:40] if q.strip() else repr(q) for q in HOSTILE]


@pytest.fixture
def table():
    """An attributes table shaped as ActivationStore.attributes() returns it."""
    records = [
        {"lr": 0.01, "labels": "true", "seed": 0, "flag": True, "width": 64},
        {"lr": 0.1, "labels": "random", "seed": 1, "flag": False, "width": 128},
        {"lr": 0.01, "labels": "random", "seed": 2, "flag": True, "width": 256},
        {"labels": "true", "seed": 3, "flag": False, "width": 64},          # no lr
        {"lr": 0.001, "seed": 4, "flag": True, "width": 128},               # no labels
        {"lr": 0.1, "labels": "true", "seed": 5, "flag": True, "width": 256},
    ]
    index = pd.Index([f"n{i}" for i in range(len(records))], name="network", dtype=object)
    return pd.DataFrame.from_records(records, index=index)


@pytest.fixture
def store(tmp_path, table):
    """A store on disk whose attributes() equals ``table``."""
    rng = np.random.default_rng(3)
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=N)
    for network, row in table.iterrows():
        attrs = {k: v for k, v in row.items() if not pd.isna(v)}
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}
        store.add(network, LAYER, rng.normal(size=(N, 3)), attrs=attrs)
    return store


@pytest.fixture
def no_cluster(monkeypatch):
    """Fail loudly if anything tries to open a Dask client or cluster."""
    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started for a query that should have been refused")

    for module in ("cca_scale.engine.compare", "cca_scale.runtime.client"):
        # (cca_scale.engine.compare is also a function's name, so fetch the module itself)
        monkeypatch.setattr(importlib.import_module(module), "open_client", refuse)


def _payload(query: str, canary) -> str:
    return query.format(canary=canary) if "{" in query else query


# ------------------------------------------------------------------------------------------------
# Hostile queries: refused everywhere, never run.


@pytest.mark.parametrize("query", HOSTILE, ids=_hostile_ids())
def test_hostile_query_is_refused_by_the_parser(query, tmp_path, table):
    canary = tmp_path / "canary"
    text = _payload(query, canary)
    with pytest.raises(InvalidQueryError, match="invalid query") as info:
        select(table, text)
    assert str(info.value).startswith("invalid query: ")
    assert isinstance(info.value, StoreError)  # old `pytest.raises(StoreError)` callers still work
    if query != "lr":  # all but a bare attribute are refused before any table is looked at
        with pytest.raises(InvalidQueryError, match="invalid query"):
            parse_query(text)
    assert not canary.exists()


@pytest.mark.parametrize("query", HOSTILE, ids=_hostile_ids())
def test_hostile_query_is_refused_by_the_store_and_compare(query, tmp_path, store, no_cluster):
    canary = tmp_path / "canary"
    text = _payload(query, canary)
    with pytest.raises(InvalidQueryError, match="invalid query"):
        store.networks(text)
    with pytest.raises(InvalidQueryError, match="invalid query"):
        store.attributes(text)
    for side in ("networks", "against"):
        started = time.perf_counter()
        with pytest.raises(InvalidQueryError, match="invalid query"):
            cca_scale.compare(store, layer=LAYER, out=tmp_path / "o.zarr", **{side: text})
        assert time.perf_counter() - started < 5, "refused only after seconds of work"
    assert not (tmp_path / "o.zarr").exists()
    assert not canary.exists()


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# On the command line a plain list such as "lr" or "True" means network ids, not a query.
CLI_HOSTILE = [q for q in HOSTILE if q.strip() and not _ID_LIST.match(q.strip())]


@pytest.mark.parametrize("query", CLI_HOSTILE, ids=[q[:40] for q in CLI_HOSTILE])
def test_hostile_query_is_refused_by_the_cli(query, tmp_path, store, capsys, no_cluster):
    canary = tmp_path / "canary"
    text = _payload(query, canary)
    path = tmp_path / "s.zarr"
    for argv in (["info", path, "--query", text],
                 ["compare", path, "--layer", LAYER, "--out", tmp_path / "o.zarr",
                  "--networks", text],
                 ["compare", path, "--layer", LAYER, "--out", tmp_path / "o.zarr",
                  "--against", text],
                 ["compare", path, "--layer", LAYER, "--out", tmp_path / "o.zarr", "--dry-run",
                  "--networks", text],
                 ["dynamics", path, "--layers", LAYER, "--out-dir", tmp_path / "dyn",
                  "--networks", text]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 1, (argv, out, err)
        assert "invalid query: " in err and "Traceback" not in err
    assert not (tmp_path / "o.zarr").exists() and not (tmp_path / "dyn").exists()
    assert not canary.exists()


def test_messages_say_why(table):
    cases = [
        ("os.system('id') == 0", r"^invalid query: function calls are not allowed "
                                 r"\('os\.system\(\.\.\.\)'\); a query compares attributes with "
                                 r"literals, e\.g\. \"lr == 0\.01 and labels == 'true'\"\.$"),
        ("@os.system('id')", "'@' references to Python variables are not allowed"),
        ("lr.to_csv('x') != 1", r"function calls are not allowed \('lr\.to_csv\(\.\.\.\)'\)"),
        ("lr.real == 1", r"attribute access .* \('lr\.real'\)"),
        ("lr[0] == 1", r"subscripts .* \('lr\[0\]'\)"),
        ("__class__ == 1", "double underscores"),
        ("lr + 1 == 2", r"arithmetic operators are not allowed \('lr \+ 1'\)"),
        ("lr ^ 1 == 0", "bitwise operators are not allowed"),
        ("(lambda: 1)() == 1", "function calls"),
        ("(lambda: 1) == 1", "lambdas are not allowed"),
        ("[x for x in [1]] == lr", "comprehensions are not allowed"),
        ("f'{lr}' == labels", "f-strings are not allowed"),
        ("(y := 1) == lr", r"assignment expressions \(':='\)"),
        ("labels in 'true'", r"'in' takes a list of literals"),
        ("lr in [seed]", "literals only, not names"),
        ("1 < 2", "compares two literals"),
        ("lr ==", "Could not evaluate the network query 'lr =='"),
        ("momentum > 0.5", r"unknown attribute 'momentum'.*Available attribute columns: 'lr', "
                           r"'labels', 'seed', 'flag', 'width' \(and the index 'network'\)"),
        ("lr", "attribute 'lr' is used as a condition, but network 'n0' holds 0.01"),
        ("labels < 5", r"cannot compare labels \('true', a str\) < 5 \(a int\) for network 'n0'"),
    ]
    for query, pattern in cases:
        with pytest.raises(InvalidQueryError, match=pattern):
            select(table, query)


def test_library_never_hands_query_text_to_an_evaluator(monkeypatch, store, table):
    def refuse(*args, **kwargs):
        raise AssertionError("query text reached an evaluator")

    monkeypatch.setattr(pd.DataFrame, "query", refuse)
    monkeypatch.setattr(pd.DataFrame, "eval", refuse)
    monkeypatch.setattr(pd, "eval", refuse)
    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    assert store.networks("lr == 0.01 and labels == 'true'") == ["n0"]
    assert select(table, "network in ['n1', 'n5'] or seed > 4") == ["n1", "n5"]


# ------------------------------------------------------------------------------------------------
# Valid queries: what pandas selects.

VALID = [
    "lr == 0.01",
    "lr != 0.01",
    "lr == 0.01 and labels == 'true'",
    "lr == 0.01 or labels == 'true'",
    "not lr == 0.01",
    "not (lr == 0.01 and labels == 'true')",
    "(lr == 0.1 or lr == 0.001) and not (labels == 'random')",
    "0.001 < lr < 0.1",
    "0.001 <= lr <= 0.1",
    "seed >= 2 and seed < 5",
    "1 < seed <= width",
    "seed > -1",
    "lr > -0.5",
    "lr == +0.1",
    "seed == 2.0",
    "0.01 == lr",
    "'true' == labels",
    "labels < 'true'",
    "labels >= 'random'",
    "labels == 'nope'",
    "labels in ['true', 'nope']",
    "labels not in ['true']",
    "lr in [0.01, 0.001]",
    "lr not in [0.01]",
    "lr in (0.1,)",
    "seed in [1, 3, 5]",
    "seed in []",
    "lr == [0.01, 0.1]",
    "lr != [0.01, 0.1]",
    "flag == True",
    "flag != True",
    "flag == False and width > 64",
    "width == seed",
    "width > 100",
    "network == 'n2'",
    "network in ['n0', 'n4', 'zzz']",
    "network > 'n3'",
    "labels == 1",
    "lr == 'x'",
    "labels == None",
    "labels != None",
    "lr == 0.01 & labels == 'true'",
    "lr == 0.01 | seed > 4",
    "~(lr == 0.01)",
    "(lr == 0.01) & ~(flag == False)",
    "flag",
    "not flag",
    "~flag",
    "flag and width >= 128",
]


@pytest.mark.parametrize("query", VALID)
def test_valid_query_selects_what_pandas_selects(query, table):
    expected = list(table.query(query).index)  # the reference, on a safe query
    assert select(table, query) == expected
    assert parse_query(query).select(table) == expected


@pytest.mark.parametrize("query", VALID[:12] + ["network in ['n0', 'n4']", "flag"])
def test_store_networks_agrees_with_select(query, store, table):
    assert store.networks(query) == select(store.attributes(), query) == select(table, query)
    assert list(store.attributes(query).index) == store.networks(query)


@pytest.mark.parametrize("query, expected", [
    # Missing values (NaN or None) are not selected by ==, <, in ... and never raise; != and
    # not in are their negations. pandas raises or differs on these, hence explicit answers.
    ("labels < 'z'", ["n0", "n1", "n2", "n3", "n5"]),
    ("tag < 'z'", ["n1"]),                       # tag: None where missing, pandas raises
    ("tag == 'b'", ["n1"]),
    ("tag != 'b'", ["n0", "n2", "n3", "n4", "n5"]),
    ("tag in ['b', None]", ["n1"]),               # None matches no missing value
    ("tag not in ['b']", ["n0", "n2", "n3", "n4", "n5"]),
    ("lr < 1 or tag == 'b'", ["n0", "n1", "n2", "n4", "n5"]),
    ("ok", ["n0"]),                              # booleans with missing values
    ("not ok", ["n1", "n2", "n3", "n4", "n5"]),
    ("seed in {1, 2}", ["n1", "n2"]),             # a set literal (pandas refuses it)
    ("lr == -0.0 or seed == -0", ["n0"]),
    ("(lr == 0.01 and\n labels == 'true')", ["n0"]),  # pandas refuses line breaks
])
def test_missing_values_and_extensions(query, expected, table):
    table = table.assign(tag=[None, "b", None, None, None, None],
                         ok=[True, False, None, None, np.nan, None])
    assert select(table, query) == expected


def test_names_and_reuse(table):
    query = parse_query("lr == 0.01 and (labels == 'true' or network in ['n2'])")
    assert query.names == ("lr", "labels", "network")
    assert query.select(table) == ["n0", "n2"]
    assert query.mask(table) == [True, False, True, False, False, False]
    assert query.select(table.iloc[::-1]) == ["n2", "n0"]  # table order, not query order
    empty = table.iloc[:0]
    assert select(empty, "lr == 0.01") == []


def test_parse_query_needs_a_str():
    with pytest.raises(InvalidQueryError, match="must be a str"):
        parse_query(3)


# ------------------------------------------------------------------------------------------------
# The CLI: ids vs queries, valid queries work, every selecting option documents the grammar.


def test_parse_selection_ids_queries_and_refusals():
    assert parse_selection(None) is None
    assert parse_selection(" a,b.c,d-1 ") == ["a", "b.c", "d-1"]
    assert parse_selection("lr == 0.01") == "lr == 0.01"
    with pytest.raises(InvalidQueryError, match="'@' references"):
        parse_selection("@os.system('id')")


def test_cli_valid_queries(tmp_path, store, capsys):
    path = tmp_path / "s.zarr"
    code, out, err = run_cli(capsys, "info", path, "--query", "lr == 0.01 & labels == 'true'")
    assert code == 0, err
    assert "networks:    1 matching" in out and "n0" in out and "n2" not in out
    code, out, err = run_cli(capsys, "info", path, "--query", "n1,n3")
    assert code == 0, err
    assert "networks:    2" in out
    code, out, err = run_cli(capsys, "compare", path, "--layer", LAYER, "--out",
                             tmp_path / "o.zarr", "--dry-run", "--networks",
                             "labels in ['true']", "--against", "0.001 < lr < 0.1")
    assert code == 0, err
    assert "rows: 3" in out and "columns: 2" in out
    code, _, err = run_cli(capsys, "info", path, "--query", "momentum > 1")
    assert code == 1 and "unknown attribute 'momentum'" in err and "'lr', 'labels'" in err


@pytest.mark.parametrize("command, options", [
    ("info", ["--query"]), ("compare", ["--networks", "--against"]), ("dynamics", ["--networks"]),
])
def test_selecting_options_document_the_grammar(command, options):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    helps = {opt: action.help for action in sub._actions for opt in action.option_strings}
    for option in options:
        assert SELECTION_HELP in helps[option] and "Selecting networks" in helps[option]
    text = " ".join(sub.format_help().split())
    assert " ".join(QUERY_GRAMMAR.split()) in text
