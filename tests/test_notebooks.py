"""Each notebook in notebooks/ executes from top to bottom, and the key numbers it prints as
``RESULT key=value`` lines say what its finding says."""

import math
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
RESULT = re.compile(r"^RESULT (\w+)=(.*)$")
#: The one command that writes every notebooks/NAME.ipynb from notebooks/NAME.py.
REGENERATE = "python notebooks/make_notebooks.py"


def _value(text: str):
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def execute(name: str, tmp_path) -> dict:
    """Run a notebook in a fresh kernel of this interpreter; return its RESULT values."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # kernel "python3" with argv "python ..." is started with sys.executable by jupyter_client,
    # so the kernel sees the environment running the tests.
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=180,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    results = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                for line in output["text"].splitlines():
                    match = RESULT.match(line)
                    if match:
                        results[match.group(1)] = _value(match.group(2))
    assert results, f"{name} printed no RESULT lines"
    return results


def _sources() -> list[Path]:
    """The notebooks' .py sources, as notebooks/make_notebooks.py lists them."""
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import make_notebooks
    finally:
        sys.path.remove(str(NOTEBOOKS))
    return make_notebooks.sources()


def check_fig2(r):
    assert r["pwcca_below_mean_cca_low_noise"] is True
    assert r["pwcca_mean_low_noise"] < r["mean_cca_mean_low_noise"] - 0.05
    assert r["pwcca_below_mean_cca_high_noise"] is False
    assert r["pwcca_mean_high_noise"] > r["mean_cca_mean_high_noise"]
    assert abs(r["pwcca_mean_equal_noise"] - r["mean_cca_mean_equal_noise"]) < 0.05


def check_fig3(r):
    assert r["gen_below_mem_later"] is True
    for layer in ("h2", "h3"):
        assert r[f"within_gen_{layer}"] < 0.25 < r[f"within_mem_{layer}"]
        # memorizing networks are about as far from each other as from generalizing ones
        assert r[f"inter_{layer}"] > r[f"within_gen_{layer}"]
    assert r["pwcca_mem_over_gen_h3"] > r["cosine_mem_over_gen_h3"]


def check_fig4(r):
    for key, value in r.items():
        assert isinstance(value, (int, float)) and math.isfinite(value), key
        if key.startswith("spearman") or key == "accuracy_correlation_r":
            assert -1 <= value <= 1, key
        if key.startswith("within"):
            assert 0 < value < 1, key
    assert len([k for k in r if k.startswith("within_subsampled_h3")]) == 4


def check_fig5(r):
    assert r["min_train_accuracy"] >= 0.99  # every group converged before clustering
    for key in ("ari_lr_silhouette", "ari_init_silhouette", "ari_lr_at_k_lr",
                "ari_init_at_k_init"):
        assert -1 <= r[key] <= 1, key
    # sharing an initialization brings networks closer than sharing nothing
    assert r["same_init_different_lr"] < r["both_different"]
    assert r["same_lr_different_init"] < r["both_different"]


def check_fig6(r):
    assert r["bottom_up_raw"] is True
    assert r["converged_raw_h1"] <= r["converged_raw_h2"] <= r["converged_raw_h3"]
    done, total = map(int, str(r["depth_ordered_raw"]).split("/"))
    assert done == total > 0
    assert r["normalised_start_error"] < 1e-12  # each normalised curve starts at exactly 1
    assert r["signal_above_noise"] is True
    assert r["signal_mean"] > r["noise_mean"] + 0.1


def check_a3(r):
    if r["skipped"]:
        assert set(r) == {"skipped"}
        return
    assert r["engine_matches"] is True
    assert r["test_accuracy"] > 0.8
    for metric in ("pwcca", "mean_cca", "cosine"):
        assert 0 <= r[f"{metric}_adjacent"] < r[f"{metric}_first_last"] <= 1.01, metric


CHECKS = {
    "fig2_signal_noise.ipynb": check_fig2,
    "fig3_generalizing_vs_memorizing.ipynb": check_fig3,
    "fig4_width.ipynb": check_fig4,
    "fig5_clusters.ipynb": check_fig5,
    "fig6_dynamics.ipynb": check_fig6,
    "a3_sequence_timesteps.ipynb": check_a3,
}


def test_every_notebook_has_its_source_and_checks():
    sources = {p.stem for p in _sources()}
    notebooks = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert not sources - notebooks, \
        f"no .ipynb for {sorted(sources - notebooks)}: run {REGENERATE} and commit the result"
    assert not notebooks - sources, \
        f"no .py source for {sorted(notebooks - sources)}: notebooks are generated, not edited"
    assert sorted(f"{stem}.ipynb" for stem in notebooks) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_matches_its_source(name):
    source = jupytext.read(NOTEBOOKS / name.replace(".ipynb", ".py"), fmt="py:percent")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert [(c.cell_type, c.source) for c in nb.cells] == \
        [(c.cell_type, c.source) for c in source.cells], \
        f"notebooks/{name} is stale: run {REGENERATE}"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"notebooks/{name} was committed with outputs: run {REGENERATE}"
    # execute() starts kernel "python3", which jupyter_client runs with this interpreter.
    assert nb.metadata.kernelspec.name == "python3", f"notebooks/{name}: run {REGENERATE}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook(name, tmp_path):
    CHECKS[name](execute(name, tmp_path))
