"""Write each notebook of this folder from the Python source beside it, without outputs.

    python notebooks/make_notebooks.py        # notebooks/NAME.py -> notebooks/NAME.ipynb

Edit the .py files, never the .ipynb. They are in jupytext's py:percent format: ``# %%`` starts a
code cell, ``# %% [markdown]`` a markdown cell whose lines are ``# `` comments. The output is
deterministic (cell ids ``cell-<index>``, kernel "python3", no cell metadata), so regenerating an
unchanged source rewrites the same bytes; tests/test_notebooks.py checks that the committed
notebooks match their sources.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
METADATA = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}}


def sources() -> list[Path]:
    """The notebooks' sources: every .py file of this folder but this script."""
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)


def build(source: Path) -> nbformat.NotebookNode:
    """The notebook of one percent-format source."""
    nb = jupytext.read(source, fmt="py:percent")
    nb.metadata = nbformat.from_dict(METADATA)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
        cell.metadata = nbformat.from_dict({})
    return nb


def main() -> None:
    for source in sources():
        target = source.with_suffix(".ipynb")
        nbformat.write(build(source), target)
        print("wrote", target)


if __name__ == "__main__":
    main()
