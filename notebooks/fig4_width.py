# %% [markdown]
# # Fig 4: wider networks converge to more similar solutions
#
# Section 3.2: groups of networks of increasing width; the PWCCA distance within each group falls
# with width (Fig 4a), and groups that converge to more similar solutions reach higher test
# accuracy (Fig 4b, r = -0.96). Layers of different widths are compared on a fixed number of
# randomly chosen neurons (footnote 8), since the distance depends on the number of neurons.
#
# Here: 3 MLPs of each width 16, 32, 64 and 128. Expect a weak trend, and check how much of it
# is the layer size: compare whole layers and 16-neuron subsets.

# %%
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
print(x_train.shape, client)

# %%
widths = (16, 32, 64, 128)
specs = [dict(width=w, seed=s, min_epochs=40) for w in widths for s in (0, 1, 2)]
nets = client.gather(client.map(lambda spec: train(**spec), specs, pure=False))
pd.DataFrame([{**s, **{k: n[k] for k in ("epochs", "train_accuracy", "test_accuracy")}}
              for s, n in zip(specs, nets)]).groupby("width")[["train_accuracy",
                                                              "test_accuracy"]].mean()

# %%
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
store.attributes().head()

# %%
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
                title=f"within-width distance, {N_NEURONS} neurons per layer")

# %%
print(pd.concat(within, axis=1).round(3))
for kind, t in within.items():
    for layer in layers:
        rho = spearmanr(t.index.to_numpy(float), t[layer].to_numpy()).statistic
        print(f"RESULT spearman_{kind}_{layer}={rho:.3f}")
for w in widths:
    print(f"RESULT within_subsampled_h3_w{w}={within['subsampled'].loc[w, 'h3']:.4f}")
corr = group_correlation(sub["h3"], by="width", attribute="test_accuracy")
print(f"RESULT accuracy_correlation_r={corr.r:.3f}")
print(f"RESULT accuracy_correlation_p={corr.p:.3g}")

# %% [markdown]
# **Reading the RESULT lines.** A negative Spearman correlation means wider groups are more alike.
# With three networks per width the trend is weak and noisy, and it depends on the layer and on
# whether whole layers or fixed-size subsets are compared: in the first layer, 16 of 128 neurons
# keep much less of the layer than 16 of 16 do, so subsampling makes wide networks look *less*
# alike (the paper's footnote 8 warns of this bias). Layer size confounds the comparison either
# way. The accuracy correlation pools all widths, so width itself drives much of it.

# %%
import shutil

client.close()
dask_cluster.close()
shutil.rmtree(workdir)  # the store and the distance matrices of this notebook
