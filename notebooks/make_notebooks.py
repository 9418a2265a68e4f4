"""Write the notebooks of this folder (without outputs) from the cells below.

    python notebooks/make_notebooks.py        # rewrites notebooks/*.ipynb

One notebook per finding of Morcos, Raghu & Bengio (NeurIPS 2018). Each uses the public API of
cca_scale only, runs in well under a minute on 2 cores, and prints its key numbers as lines
``RESULT key=value`` that tests/test_notebooks.py checks. Edit the cells here, not the .ipynb.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# -- shared cells ------------------------------------------------------------------------------
MLP_SETUP = '''\
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

import cca_scale
from cca_scale import ActivationStore

# scikit-learn's bundled digits (no download); every comparison uses the training images, as the
# paper does: activations have shape (n_datapoints, n_neurons) = (1347, width).
X, y = load_digits(return_X_y=True)
X = X / 16.0
x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                    stratify=y)


def hidden_activations(model, x):
    """Each hidden layer's ReLU activations of a fitted MLPClassifier: {'h1': (n, width), ...}."""
    acts, h = {}, x
    for i, (w, b) in enumerate(zip(model.coefs_[:-1], model.intercepts_[:-1]), 1):
        h = np.maximum(h @ w + b, 0.0)
        acts[f"h{i}"] = h.astype(np.float32)
    return acts


def train(width=64, lr=3e-3, seed=0, shuffled=False, min_epochs=60, max_epochs=300,
          snapshots=()):
    """Train an MLP(width, width, width) with Adam, epoch by epoch, until 100% train accuracy
    (checked every 10 epochs from min_epochs). Returns its activations at each snapshot epoch
    and at the last one, and its accuracies."""
    labels = y_shuffled if shuffled else y_train
    model = MLPClassifier((width,) * 3, learning_rate_init=lr, batch_size=64, random_state=seed)
    acts = {}
    # One BLAS thread per process: several trainings share the cores.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(1, max_epochs + 1):
            model.partial_fit(x_train, labels, classes=np.arange(10))
            if epoch in snapshots:
                acts[epoch] = hidden_activations(model, x_train)
            if epoch >= min_epochs and epoch % 10 == 0 and model.score(x_train, labels) >= 0.999:
                break
        acts[epoch] = hidden_activations(model, x_train)
        return {"acts": acts, "epochs": epoch, "train_accuracy": model.score(x_train, labels),
                "test_accuracy": model.score(x_test, y_test)}


# One fixed shuffle of the training labels, shared by every memorizing network.
y_shuffled = np.random.default_rng(1).permutation(y_train)

# A local Dask cluster: trains the networks, then runs the all-pairs engine.
dask_cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                            dashboard_address=":0", silence_logs=logging.ERROR)
client = Client(dask_cluster)
workdir = Path(tempfile.mkdtemp(prefix="cca-scale-notebook-"))
print(x_train.shape, client)'''

CLOSE = '''\
import shutil

client.close()
dask_cluster.close()
shutil.rmtree(workdir)  # the store and the distance matrices of this notebook'''


def store_cell(name_expr: str, attrs_expr: str) -> str:
    return f'''\
store = ActivationStore.create(workdir / "acts.zarr", n_datapoints=len(x_train))
for spec, net in zip(specs, nets):
    name = {name_expr}
    for epoch, layers in net["acts"].items():
        for layer, a in layers.items():
            store.add(name, layer, a, step=epoch, attrs={attrs_expr})
print(len(store.networks()), "networks;", store.attributes().head(3))'''


# -- the notebooks -----------------------------------------------------------------------------
FIG2 = [
    ("md", """\
# Fig 2: projection weighting vs signal and noise (toy data)

Morcos, Raghu & Bengio (2018), Section 2.2, Fig 2: two layers share a *signal* subspace and each
has its own *noise* dimensions. As the share of signal dimensions falls, the unweighted mean CCA
underestimates the shared structure while projection weighted CCA (PWCCA) "remains largely
robust", and SVCCA lies in between.

Here the signal dimensions have unit variance and we vary the noise standard deviation too. The
shared part is identical up to a linear map, so the ideal distance of the shared structure is 0:
the lower the distance, the more robust the metric. Only the core one-pair functions are used."""),
    ("code", '''\
import numpy as np
import pandas as pd

import cca_scale
from cca_scale.analysis import signal_noise_layers


rng = np.random.default_rng(2018)
rows = []
for noise_std in (0.3, 1.0, 3.0):
    for n_signal in (4, 8, 16, 24, 32, 36):
        for repeat in range(2):
            x, y = signal_noise_layers(rng, n_signal=n_signal, noise_std=noise_std)
            rows.append({"noise_std": noise_std, "signal_fraction": n_signal / 40,
                         "pwcca": cca_scale.pwcca_distance(x, y),
                         "mean_cca": cca_scale.mean_cca_distance(x, y),
                         "svcca": cca_scale.svcca_distance(x, y, keep=0.99)})
table = pd.DataFrame(rows).groupby(["noise_std", "signal_fraction"]).mean()
table.round(3)'''),
    ("code", '''\
from matplotlib.figure import Figure

fig = Figure(figsize=(11, 3.4))
axes = fig.subplots(1, 3, sharey=True)
for ax, (noise_std, part) in zip(axes, table.groupby(level="noise_std")):
    part = part.droplevel("noise_std")
    for metric, colour in (("pwcca", "tab:red"), ("mean_cca", "tab:blue"), ("svcca", "tab:green")):
        ax.plot(part.index, part[metric], marker="o", color=colour, label=metric)
    ax.set_title(f"noise std {noise_std:g} (signal std 1)")
    ax.set_xlabel("fraction of signal dimensions")
axes[0].set_ylabel("distance")
axes[0].legend()
fig'''),
    ("code", '''\
summary = table.groupby(level="noise_std").agg(
    pwcca=("pwcca", "mean"), mean_cca=("mean_cca", "mean"), svcca=("svcca", "mean"))
summary["pwcca_below_mean_cca_everywhere"] = table.groupby(level="noise_std").apply(
    lambda t: bool((t["pwcca"] < t["mean_cca"]).all()))
print(summary.round(3))
for noise_std, row in summary.iterrows():
    key = {0.3: "low", 1.0: "equal", 3.0: "high"}[noise_std]
    print(f"RESULT pwcca_mean_{key}_noise={row['pwcca']:.4f}")
    print(f"RESULT mean_cca_mean_{key}_noise={row['mean_cca']:.4f}")
    print(f"RESULT svcca_mean_{key}_noise={row['svcca']:.4f}")
    print(f"RESULT pwcca_below_mean_cca_{key}_noise={row['pwcca_below_mean_cca_everywhere']}")'''),
    ("md", """\
**Reading the RESULT lines.** When the noise has a lower variance than the signal, PWCCA stays
far below the unweighted mean: its weights follow the directions that account for most of the
layer, which are the signal. When the noise has the signal's variance the two agree, and when
the noise dominates the variance PWCCA is *worse* than the mean: the projection weights then
favour the noise. So the paper's Fig 2 holds only when noise has lower variance than signal
(as is typical of the low-variance, unstable directions the paper calls noise). SVCCA, keeping
99% of the variance, keeps the noise dimensions too and does not lie between the two here."""),
]

FIG3 = [
    ("md", """\
# Fig 3: generalizing networks converge to more similar solutions than memorizing ones

Section 3.1: groups of networks with identical topology trained on the true labels
(generalizing) or on one fixed random permutation of the labels (memorizing), all to ~100% train
accuracy. The paper finds within-generalizing PWCCA distances well below within-memorizing ones
in the later layers, memorizing networks as far from each other as from generalizing ones
("inter"), and cosine distance unable to show the difference (Fig A5).

Here: 3 + 3 MLPs (64, 64, 64) on scikit-learn's digits, trained on a local Dask cluster,
activations written to a Zarr activation store, all pairs compared by the engine."""),
    ("code", MLP_SETUP),
    ("code", '''\
specs = [dict(seed=s, shuffled=False) for s in (0, 1, 2)] + \\
        [dict(seed=s, shuffled=True) for s in (10, 11, 12)]
nets = client.gather(client.map(lambda spec: train(**spec), specs, pure=False))
pd.DataFrame([{**s, **{k: n[k] for k in ("epochs", "train_accuracy", "test_accuracy")}}
              for s, n in zip(specs, nets)])'''),
    ("code", store_cell('f"mlp-s{spec[\'seed\']}-{\'shuffled\' if spec[\'shuffled\'] else \'true\'}"',
                        '{"regime": "memorizing" if spec["shuffled"] else "generalizing", '
                        '"seed": spec["seed"]}')),
    ("code", '''\
from cca_scale.analysis import group_statistics, plot_group_bars

layers = ["h1", "h2", "h3"]
distances = {metric: {layer: cca_scale.compare(store, layer=layer, step="last", metric=metric,
                                               out=workdir / f"{metric}_{layer}.zarr",
                                               client=client)
                      for layer in layers}
             for metric in ("pwcca", "cosine")}
stats = {metric: group_statistics(d, by="regime") for metric, d in distances.items()}
plot_group_bars(stats["pwcca"], title="PWCCA distance within and between regimes",
                ylabel="PWCCA distance")'''),
    ("code", '''\
def summary(table):
    wide = table.assign(pair=table["group_a"] + "/" + table["group_b"]).pivot(
        index="layer", columns="pair", values="mean")
    return wide.rename(columns={"generalizing/generalizing": "within_gen",
                                "memorizing/memorizing": "within_mem",
                                "generalizing/memorizing": "inter"})[["within_gen", "within_mem",
                                                                      "inter"]]


pw, cos = summary(stats["pwcca"]), summary(stats["cosine"])
print("PWCCA\\n", pw.round(3), "\\ncosine\\n", cos.round(3))
for layer in layers:
    print(f"RESULT within_gen_{layer}={pw.loc[layer, 'within_gen']:.4f}")
    print(f"RESULT within_mem_{layer}={pw.loc[layer, 'within_mem']:.4f}")
    print(f"RESULT inter_{layer}={pw.loc[layer, 'inter']:.4f}")
later = ["h2", "h3"]
print(f"RESULT gen_below_mem_later={bool((pw.loc[later, 'within_gen'] < pw.loc[later, 'within_mem']).all())}")
print(f"RESULT pwcca_mem_over_gen_h3={pw.loc['h3', 'within_mem'] / pw.loc['h3', 'within_gen']:.3f}")
print(f"RESULT cosine_mem_over_gen_h3={cos.loc['h3', 'within_mem'] / cos.loc['h3', 'within_gen']:.3f}")'''),
    ("md", """\
**Reading the RESULT lines.** Within-generalizing distances stay low at every layer while
within-memorizing ones grow with depth, and "inter" is close to within-memorizing: each
memorizing network found its own solution. Cosine distance compares neuron *i* of one network
with neuron *i* of another, which has no meaning across networks, so its ratio between the
groups stays much closer to 1 than PWCCA's: the linear invariance of CCA is what reveals the
difference."""),
    ("code", CLOSE),
]

FIG4 = [
    ("md", """\
# Fig 4: wider networks converge to more similar solutions

Section 3.2: groups of networks of increasing width; the PWCCA distance within each group falls
with width (Fig 4a), and groups that converge to more similar solutions reach higher test
accuracy (Fig 4b, r = -0.96). Layers of different widths are compared on a fixed number of
randomly chosen neurons (footnote 8), since the distance depends on the number of neurons.

Here: 3 MLPs of each width 16, 32, 64 and 128. Expect a weak trend, and check how much of it
is the layer size: compare whole layers and 16-neuron subsets."""),
    ("code", MLP_SETUP),
    ("code", '''\
widths = (16, 32, 64, 128)
specs = [dict(width=w, seed=s, min_epochs=40) for w in widths for s in (0, 1, 2)]
nets = client.gather(client.map(lambda spec: train(**spec), specs, pure=False))
pd.DataFrame([{**s, **{k: n[k] for k in ("epochs", "train_accuracy", "test_accuracy")}}
              for s, n in zip(specs, nets)]).groupby("width")[["train_accuracy",
                                                              "test_accuracy"]].mean()'''),
    ("code", '''\
from cca_scale.analysis import subsample_neurons

N_NEURONS = min(widths)
store = ActivationStore.create(workdir / "acts.zarr", n_datapoints=len(x_train))
rng = np.random.default_rng(4)
for spec, net in zip(specs, nets):
    name = f"mlp-w{spec['width']}-s{spec['seed']}"
    final = net["acts"][net["epochs"]]
    attrs = {"width": spec["width"], "seed": spec["seed"], "test_accuracy": net["test_accuracy"]}
    for layer, a in final.items():
        store.add(name, layer, a, attrs=attrs)
        store.add(name, f"{layer}_n{N_NEURONS}", subsample_neurons(a, N_NEURONS, rng=rng))
store.attributes().head()'''),
    ("code", '''\
from scipy.stats import spearmanr

from cca_scale.analysis import group_correlation, group_statistics, plot_group_bars

layers = ["h1", "h2", "h3"]
whole = {l: cca_scale.compare(store, layer=l, out=workdir / f"{l}.zarr", client=client)
         for l in layers}
sub = {l: cca_scale.compare(store, layer=f"{l}_n{N_NEURONS}", out=workdir / f"{l}_sub.zarr",
                            client=client) for l in layers}
within = {}
for kind, mats in (("whole", whole), ("subsampled", sub)):
    t = group_statistics(mats, by="width", layers=layers)
    within[kind] = t[t["kind"] == "within"].pivot(index="group_a", columns="layer", values="mean")
    within[kind].index.name = "width"
plot_group_bars(group_statistics(sub, by="width", layers=layers),
                title=f"within-width distance, {N_NEURONS} neurons per layer")'''),
    ("code", '''\
print(pd.concat(within, axis=1).round(3))
for kind, t in within.items():
    for layer in layers:
        rho = spearmanr(t.index.to_numpy(float), t[layer].to_numpy()).statistic
        print(f"RESULT spearman_{kind}_{layer}={rho:.3f}")
for w in widths:
    print(f"RESULT within_subsampled_h3_w{w}={within['subsampled'].loc[w, 'h3']:.4f}")
corr = group_correlation(sub["h3"], by="width", attribute="test_accuracy")
print(f"RESULT accuracy_correlation_r={corr.r:.3f}")
print(f"RESULT accuracy_correlation_p={corr.p:.3g}")'''),
    ("md", """\
**Reading the RESULT lines.** A negative Spearman correlation means wider groups are more alike.
With three networks per width the trend is weak and noisy, and it depends on the layer and on
whether whole layers or fixed-size subsets are compared: in the first layer, 16 of 128 neurons
keep much less of the layer than 16 of 16 do, so subsampling makes wide networks look *less*
alike (the paper's footnote 8 warns of this bias). Layer size confounds the comparison either
way. The accuracy correlation pools all widths, so width itself drives much of it."""),
    ("code", CLOSE),
]

FIG5 = [
    ("md", """\
# Fig 5: clusters of solutions across initializations and learning rates

Section 3.3: 200 networks with different initializations and learning rates, all at similar
train loss, formed a few clusters in the PWCCA distance matrix, and the clusters followed the
learning rate.

Here: MLPs (64, 64, 64) at three learning rates x three seeds, the same seeds at every learning
rate (a seed sets the initial weights and the batch order), all trained to 100% train accuracy.
We cluster the distances and score the clusters against the learning rate and against the
initialization with the adjusted Rand index (ARI: 1 identical, ~0 chance). Train accuracy per
group is shown next to every clustering: an unconverged group can look like a cluster."""),
    ("code", MLP_SETUP),
    ("code", '''\
lrs, seeds = (1e-3, 3e-3, 1e-2), (0, 1, 2)
specs = [dict(lr=lr, seed=s) for lr in lrs for s in seeds]
nets = client.gather(client.map(lambda spec: train(**spec), specs, pure=False))
runs = pd.DataFrame([{**s, **{k: n[k] for k in ("epochs", "train_accuracy", "test_accuracy")}}
                     for s, n in zip(specs, nets)])
runs.groupby("lr")[["epochs", "train_accuracy", "test_accuracy"]].mean()'''),
    ("code", store_cell('f"mlp-lr{spec[\'lr\']:g}-s{spec[\'seed\']}"',
                        '{"lr": spec["lr"], "seed": spec["seed"]}')),
    ("code", '''\
from cca_scale.analysis import cluster, plot_heatmap

D = cca_scale.compare(store, layer="h3", step="last", out=workdir / "h3.zarr", client=client)
best = cluster(D)                              # k chosen by silhouette
by_lr = cluster(D, n_clusters=len(lrs))        # as many clusters as learning rates
by_init = cluster(D, n_clusters=len(seeds))    # as many clusters as initializations
plot_heatmap(D, clusters=best, attributes=["lr", "seed"], title="PWCCA distance, layer h3")'''),
    ("code", '''\
print(best.to_frame())
print(f"RESULT k_silhouette={best.k}")
print(f"RESULT ari_lr_silhouette={best.agreement('lr').ari:.3f}")
print(f"RESULT ari_init_silhouette={best.agreement('seed').ari:.3f}")
print(f"RESULT ari_lr_at_k_lr={by_lr.agreement('lr').ari:.3f}")
print(f"RESULT ari_init_at_k_init={by_init.agreement('seed').ari:.3f}")
same_lr = D.row_info["lr"].to_numpy()[:, None] == D.row_info["lr"].to_numpy()[None, :]
same_seed = D.row_info["seed"].to_numpy()[:, None] == D.row_info["seed"].to_numpy()[None, :]
print(f"RESULT same_init_different_lr={D.values[same_seed & ~same_lr].mean():.4f}")
print(f"RESULT same_lr_different_init={D.values[same_lr & ~same_seed].mean():.4f}")
print(f"RESULT both_different={D.values[~same_lr & ~same_seed].mean():.4f}")
print(f"RESULT min_train_accuracy={runs['train_accuracy'].min():.4f}")'''),
    ("md", """\
**Reading the RESULT lines.** With every group converged, the clusters do *not* follow the
learning rate the way the paper's did. Networks from the same initialization stay closest when
the learning rates are small (they end near where they started); a large learning rate moves a
network away from its initialization and from everything else, which can make that learning
rate look like a group of its own even though its members are not close to each other. Compare
the three mean distances before reading a cluster as "a learning-rate solution"."""),
    ("code", CLOSE),
]

FIG6 = [
    ("md", """\
# Fig 6 and Fig 1: training dynamics and the signal/noise split

Section 4.1, Fig 6: comparing each layer over training with its final representation shows
*bottom-up* convergence: lower layers reach their final representation first. Section 2.2,
Fig 1: CCA directions that converge early stay stable (signal), while the least converged ones
keep changing (noise), which motivates projection weighting.

Here: 3 MLPs (64, 64, 64) with their activations stored at several epochs. The engine compares
every epoch with the last (`step="all"`, `against_step="last"`). We also normalise each curve by
its first value: do deeper layers converge later, or do they just start further away?"""),
    ("code", MLP_SETUP),
    ("code", '''\
snapshots = (1, 2, 3, 5, 8, 13, 20, 30, 45)
specs = [dict(seed=s, snapshots=snapshots) for s in (0, 1, 2)]
nets = client.gather(client.map(lambda spec: train(**spec), specs, pure=False))
[(n["epochs"], round(n["train_accuracy"], 4)) for n in nets]'''),
    ("code", store_cell('f"mlp-s{spec[\'seed\']}"', '{"seed": spec["seed"]}')),
    ("code", '''\
from cca_scale.analysis import convergence_curves, convergence_order, plot_convergence

layers = ["h1", "h2", "h3"]
curves = {}
for metric in ("pwcca", "mean_cca"):
    mats = {l: cca_scale.compare(store, layer=l, step="all", against_step="last", metric=metric,
                                 out=workdir / f"dyn_{metric}_{l}.zarr", client=client)
            for l in layers}
    curves[metric] = convergence_curves(mats)
pw = curves["pwcca"]
pw_norm = pw.assign(distance=pw["distance"] / pw.groupby(["layer", "network"])["distance"]
                    .transform("first"))
plot_convergence(pw, layer_order=layers, threshold=0.05, title="PWCCA distance to the last epoch")'''),
    ("code", '''\
plot_convergence(pw_norm, layer_order=layers, threshold=0.25,
                 title="normalised by each layer's distance at epoch 1")'''),
    ("code", '''\
raw = convergence_order(pw, threshold=0.05, layer_order=layers)
norm = convergence_order(pw_norm, threshold=0.25, layer_order=layers)
mean = pw.groupby(["layer", "step"])["distance"].mean().unstack("layer")[layers]
print(mean.round(3))
print(pd.DataFrame({"raw": raw.steps, "normalised": norm.steps}))
print(f"RESULT bottom_up_raw={raw.bottom_up}")
print(f"bottom-up after normalising: {norm.bottom_up}")
first = pw_norm.sort_values("step").groupby(["layer", "network"])["distance"].first()
print(f"RESULT normalised_start_error={float((first - 1).abs().max()):.3g}")
for layer in layers:
    print(f"RESULT converged_raw_{layer}={raw.steps[layer]:g}")
    print(f"RESULT converged_normalised_{layer}={norm.steps[layer]:g}")
inner = mean[mean.index < mean.index.max()]
print(f"RESULT depth_ordered_raw={int((np.diff(inner.to_numpy(), axis=1) > 0).all(axis=1).sum())}/{len(inner)}")'''),
    ("md", """\
## Fig 1: which CCA directions are signal?

For one network's last hidden layer: CCA between the layer at epoch 1 (early) and at the middle
of training gives the mid-training layer's canonical directions sorted by how well they had
already converged. The top directions form S (signal), the bottom ones B (noise); each is then
compared with the layer at every later epoch."""),
    ("code", '''\
from cca_scale.analysis import plot_signal_noise, rho_over_training, signal_noise_split

net = store.networks()[0]
steps = store.steps(net, "h3")
layer_at = {s: store.read(net, "h3", step=s) for s in steps}
mid = steps[len(steps) // 2]
rho = rho_over_training({s: layer_at[s] for s in steps[:-1]}, layer_at[steps[-1]])
split = signal_noise_split(layer_at[steps[0]], layer_at[mid],
                           {s: layer_at[s] for s in steps if s > steps[0]}, n_directions=16)
print(rho.iloc[:, ::12].round(3))
plot_signal_noise(split, title=f"{net}, h3: S and B chosen between epochs {steps[0]} and {mid}")'''),
    ("code", '''\
print(split.to_frame().round(3))
print(f"RESULT split_mid_epoch={mid}")
print(f"RESULT signal_mean={split.signal.mean():.4f}")
print(f"RESULT noise_mean={split.noise.mean():.4f}")
# At the mid step S and B both lie in the layer's own span (both correlations are 1 by
# construction); the finding is about the other steps.
others = split.signal.index != mid
print(f"RESULT signal_above_noise={bool((split.signal[others] > split.noise[others]).all())}")'''),
    ("md", """\
**Reading the RESULT lines.** In raw PWCCA distance the first layer is the closest to its final
state at every epoch and crosses the threshold first: bottom-up, as in the paper. Divided by
each layer's distance at epoch 1, the curves nearly coincide: the deeper layers mostly start
further away rather than converging later, so the effect is weaker than the raw curves suggest.
In Fig 1's split the early-converged directions (S) stay far more similar to the layer over
training than the unconverged ones (B)."""),
    ("code", CLOSE),
]

A3 = [
    ("md", """\
# Appendix A.3: a recurrent hidden state across sequence timesteps

Section 4 and A.3: besides training time, an RNN has *sequence* time. The paper finds that CCA
reveals similarity between a hidden state at different timesteps that cosine and Euclidean
distance miss (Figs A2, A4), but also that the hidden state changes a lot over a sequence, even
up to linear transforms (Fig A3).

Here: a small LSTM (torch) reads each 8 x 8 digit row by row (8 timesteps of 8 pixels) and
classifies it. We compare its hidden state at every timestep with every other, in memory
(`cca_scale.analysis.timestep_distances`) and through the store and engine
(`store.add(..., timesteps=True)`, `compare(..., timestep="all")`). Needs torch; without it the
notebook says so and stops."""),
    ("code", '''\
import importlib.util

HAVE_TORCH = importlib.util.find_spec("torch") is not None
if not HAVE_TORCH:
    print("torch not installed: skipping (pip install 'cca-scale[torch]' to run this notebook)")
    print("RESULT skipped=True")
else:
    print("RESULT skipped=False")'''),
    ("code", '''\
if HAVE_TORCH:
    import logging
    import tempfile
    from pathlib import Path

    import numpy as np
    import pandas as pd
    import torch
    from distributed import Client, LocalCluster
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import cca_scale
    from cca_scale import ActivationStore
    from cca_scale.analysis import timestep_distances

    torch.manual_seed(0)
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8).astype(np.float32)  # (n, timesteps = rows, features)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y)

    class RowLSTM(torch.nn.Module):
        def __init__(self, hidden=32):
            super().__init__()
            self.lstm = torch.nn.LSTM(8, hidden, batch_first=True)
            self.out = torch.nn.Linear(hidden, 10)

        def forward(self, x):
            states, _ = self.lstm(x)          # (batch, timesteps, hidden)
            return self.out(states[:, -1]), states

    model = RowLSTM()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for epoch in range(15):
        for idx in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx])[0], yt[idx])
            loss.backward()
            opt.step()
    with torch.no_grad():
        logits, hidden = model(xt)
        test_acc = (model(torch.from_numpy(x_test))[0].argmax(1).numpy() == y_test).mean()
    hidden = hidden.numpy()                   # (n_datapoints, n_timesteps, n_units)
    print(hidden.shape, f"train acc {(logits.argmax(1) == yt).float().mean():.3f}, "
          f"test acc {test_acc:.3f}")'''),
    ("code", '''\
if HAVE_TORCH:
    metrics = ("pwcca", "mean_cca", "cosine")
    D = {m: timestep_distances(hidden, metric=m) for m in metrics}
    print(D["pwcca"].to_pandas().round(2))'''),
    ("code", '''\
if HAVE_TORCH:
    dask_cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(dask_cluster)
    workdir = Path(tempfile.mkdtemp(prefix="cca-scale-notebook-"))
    store = ActivationStore.create(workdir / "acts.zarr", n_datapoints=len(x_train))
    store.add("lstm-s0", "hidden", hidden, timesteps=True)
    E = cca_scale.compare(store, layer="hidden", timestep="all", out=workdir / "t.zarr",
                          client=client)
    print(E.labels)
    engine_matches = bool(np.allclose(E.values, D["pwcca"].values, atol=1e-8))
    client.close()
    dask_cluster.close()
    import shutil
    shutil.rmtree(workdir)
    print("engine == in-memory:", engine_matches)'''),
    ("code", '''\
if HAVE_TORCH:
    T = hidden.shape[1]
    def adjacent(M):
        return float(np.mean([M.values[t, t + 1] for t in range(T - 1)]))
    for m in metrics:
        print(f"RESULT {m}_adjacent={adjacent(D[m]):.4f}")
        print(f"RESULT {m}_first_last={D[m].values[0, T - 1]:.4f}")
    print(f"RESULT engine_matches={engine_matches}")
    print(f"RESULT test_accuracy={test_acc:.4f}")'''),
    ("md", """\
**Reading the RESULT lines.** Compare each metric's distance between neighbouring timesteps with
its distance between the first and the last one. Cosine distance compares unit by unit, so it
also counts changes that are only a linear transform of the state; CCA does not. Even for
PWCCA the first and last timesteps stay far apart: over a sequence the hidden state changes in
ways no linear map undoes, as the paper found (Fig A3)."""),
]

NOTEBOOKS = {
    "fig2_signal_noise.ipynb": FIG2,
    "fig3_generalizing_vs_memorizing.ipynb": FIG3,
    "fig4_width.ipynb": FIG4,
    "fig5_clusters.ipynb": FIG5,
    "fig6_dynamics.ipynb": FIG6,
    "a3_sequence_timesteps.ipynb": A3,
}


def build(cells) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                for kind, src in cells]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return nb


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(cells), HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
