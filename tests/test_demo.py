"""``cca-scale demo``: the quick sweep runs end to end through the CLI, writes its files, and
reproduces the generalizing-vs-memorizing finding; the pieces it is built from are checked
against scikit-learn and against themselves."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cca_scale.demo import findings as F
from cca_scale.demo.sweep import (
    NetworkSpec,
    SweepConfig,
    experiments,
    layer_activations,
    load_dataset,
    sweep_specs,
    train_network,
)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", "cca_scale.cli.main", "demo", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=240, env=env)
    return out, proc


@pytest.mark.slow
def test_quick_demo_runs_and_names_its_output(quick_demo):
    out, proc = quick_demo
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()
    assert any(str(out) in line for line in last[-20:])  # the final lines name the folder
    assert "report.html" in last[-1]
    for name in ("heatmap.png", "heatmap_lr_sweep.png", "generalizing_vs_memorizing.png",
                 "convergence.png", "width.png", "toy_signal_noise.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    for name in ("report.txt", "report.html", "findings.json", "networks.csv"):
        assert (out / name).stat().st_size > 500, name
    assert (out / "activations.zarr" / "zarr.json").is_file()
    # the printed report is the one written to report.txt
    assert (out / "report.txt").read_text() in proc.stdout


@pytest.mark.slow
def test_quick_demo_reproduces_generalizing_vs_memorizing(quick_demo):
    out, proc = quick_demo
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads((out / "findings.json").read_text())
    table = {row["layer"]: row for row in found["generalization"]}
    assert set(table) == {"h1", "h2", "h3", "logits", "softmax"}
    for layer in ("h2", "h3"):  # the later layers
        row = table[layer]
        assert row["within_generalizing"] < row["within_memorizing"], row
        assert row["within_generalizing"] < 0.25 < row["within_memorizing"], row
    # every network near 100% train accuracy, and memorizing ones at chance on the test set
    acc = {row["regime"]: row for row in found["generalization_accuracy"]}
    assert acc["generalizing"]["train_accuracy_min"] >= 0.99
    assert acc["memorizing"]["train_accuracy_min"] >= 0.99
    assert acc["memorizing"]["test_accuracy_mean"] < 0.3 < acc["generalizing"]["test_accuracy_mean"]
    verdicts = {(v["figure"], v["claim"]): v["verdict"] for v in found["verdicts"]}
    fig3 = [v for (fig, claim), v in verdicts.items()
            if fig == "Fig 3" and claim.startswith("generalizing networks")]
    assert fig3 == ["reproduces"]
    # the printed verdicts are the computed ones
    for v in found["verdicts"]:
        assert f"{v['verdict'].upper():<11} {v['claim']}" in proc.stdout
    # the other findings were computed (numbers, not placeholders)
    assert found["learning_rates"]["clustering"] and found["dynamics"]["converged"]
    assert all(np.isfinite(r["pwcca"]) for r in found["toy"]["table"])


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    proc = subprocess.run(
        [sys.executable, "-m", "cca_scale.cli.main", "demo", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "not written by 'cca-scale demo'" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_layer_activations_match_scikit_learn():
    from sklearn.neural_network import MLPClassifier

    data = load_dataset()
    model = MLPClassifier((16, 8), max_iter=5, random_state=0).fit(data.x_train, data.y_train)
    acts = layer_activations(model, data.x_train)
    assert list(acts) == ["h1", "h2", "logits", "softmax"]
    assert acts["h1"].shape == (len(data.x_train), 16) and acts["h2"].shape[1] == 8
    assert all(a.dtype == np.float32 for a in acts.values())
    assert (acts["h1"] >= 0).all()
    np.testing.assert_allclose(acts["softmax"], model.predict_proba(data.x_train), atol=1e-5)
    np.testing.assert_array_equal(model.classes_[acts["logits"].argmax(1)],
                                  model.predict(data.x_train))


def test_train_network_records_snapshots_and_stops_at_target():
    spec = NetworkSpec(name="t", width=16, lr=3e-3, seed=0, min_epochs=4, max_epochs=6,
                       check_every=1, target_accuracy=0.0, snapshots=(1, 3))
    net = train_network(spec)
    assert net.final_epoch == 4  # target reached at the first check
    assert sorted(net.activations) == [1, 3, 4]
    assert set(net.history) == {1, 3, 4}
    assert net.activations[4]["h3"].shape == (len(load_dataset().x_train), 16)


def test_sweep_shares_networks_between_experiments():
    config = SweepConfig.full()
    specs = sweep_specs(config)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    groups = experiments(config)
    assert set().union(*map(set, groups.values())) == set(names)
    assert set(groups["dynamics"]) <= set(groups["lr_sweep"]) | set(groups["generalizing"])
    by_name = {s.name: s for s in specs}
    for name in groups["dynamics"]:
        assert set(config.snapshots) <= set(by_name[name].snapshots)
    for name in groups["lr_sweep"]:
        assert config.early_epoch in by_name[name].snapshots
    assert len({by_name[n].labels for n in groups["memorizing"]}) == 1


def test_load_dataset_is_fixed():
    a, b = load_dataset(), load_dataset(test_size=0.25, seed=0)
    assert a.fingerprint == b.fingerprint
    assert len(a.x_train) == 1347 and a.x_train.max() <= 1.0
    # one fixed shuffle of the train labels: same class counts, mostly different labels
    np.testing.assert_array_equal(np.bincount(a.y_random), np.bincount(a.y_train))
    assert (a.y_random != a.y_train).mean() > 0.8


def test_toy_signal_noise_is_seeded_and_pwcca_wins_only_with_quiet_noise():
    kw = dict(signal_fractions=(0.2, 0.6), noise_stds=(0.3, 3.0), repeats=1, n_datapoints=500,
              n_neurons=20)
    a = F.toy_signal_noise(rng=np.random.default_rng(1), **kw)
    b = F.toy_signal_noise(rng=np.random.default_rng(1), **kw)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.summary.loc[0.3, "pwcca_below_mean_cca_everywhere"]
    assert not a.summary.loc[3.0, "pwcca_below_mean_cca_everywhere"]
