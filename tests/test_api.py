"""The public surface: ``__all__`` is real, the README only names public things, every command
has a teaching ``--help``."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import cca_scale
from cca_scale.cli.main import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_all_names_exist_and_are_unique():
    assert len(cca_scale.__all__) == len(set(cca_scale.__all__))
    assert [name for name in cca_scale.__all__ if not hasattr(cca_scale, name)] == []


def test_readme_mentions_only_public_names():
    readme = (ROOT / "README.md").read_text()
    used = set(re.findall(r"\bcca_scale\.([A-Za-z_][A-Za-z0-9_]*)\(", readme))
    assert used, "the README shows the Python API"
    assert sorted(used - set(cca_scale.__all__)) == []


def test_readme_opens_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1:lines.index("```")]
    assert len(block) == 2
    assert block[0].endswith("cca-scale demo") and "pip install ." in block[0]
    assert "pytest" in block[1] and '".[test]"' in block[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert block[1] in ci  # CI runs exactly the README's test command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert command.replace("_", "-") in sub.choices or command in sub.choices
    text = sub.choices.get(command.replace("_", "-"), sub.choices.get(command)).format_help()
    assert "cca-scale" in text and len(text) > 300


def test_top_level_help_and_version_are_fast_and_work():
    out = subprocess.run([sys.executable, "-m", "cca_scale.cli.main", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "compare" in out.stdout and "demo" in out.stdout
    version = subprocess.run([sys.executable, "-m", "cca_scale.cli.main", "--version"],
                             capture_output=True, text=True)
    assert version.stdout.startswith("cca-scale ")


def test_no_print_in_library_code():
    offenders = []
    for path in (ROOT / "cca_scale").rglob("*.py"):
        if "cli" in path.parts:
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*print\(", line):
                offenders.append(f"{path.relative_to(ROOT)}:{no}")
    assert offenders == []


def test_core_imports_no_dask_zarr_or_pandas():
    """The math stays importable (and picklable to any worker) without the runtime's stack."""
    code = ("import sys, cca_scale.core, cca_scale.core.pairs, cca_scale.core.metrics; "
            "print(sorted(m for m in ('dask', 'distributed', 'zarr', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_old_deploy_module_still_works_for_one_release_with_a_warning():
    import cca_scale.deploy as old
    import cca_scale.runtime as new

    with pytest.warns(DeprecationWarning, match="moved to cca_scale.runtime.launch"):
        assert old.launch is new.launch
    with pytest.raises(AttributeError):
        old.no_such_name
