# %% [markdown]
# # Appendix A.3: a recurrent hidden state across sequence timesteps
#
# Section 4 and A.3: besides training time, an RNN has *sequence* time. The paper finds that CCA
# reveals similarity between a hidden state at different timesteps that cosine and Euclidean
# distance miss (Figs A2, A4), but also that the hidden state changes a lot over a sequence, even
# up to linear transforms (Fig A3).
#
# Here: a small LSTM (torch) reads each 8 x 8 digit row by row (8 timesteps of 8 pixels) and
# classifies it. We compare its hidden state at every timestep with every other, in memory
# (`cca_scale.analysis.timestep_distances`) and through the store and engine
# (`store.add(..., timesteps=True)`, `compare(..., timestep="all")`). Needs torch; without it the
# notebook says so and stops.

# %%
import importlib.util

HAVE_TORCH = importlib.util.find_spec("torch") is not None
if not HAVE_TORCH:
    print("torch not installed: skipping (pip install 'cca-scale[torch]' to run this notebook)")
    print("RESULT skipped=True")
else:
    print("RESULT skipped=False")

# %%
if HAVE_TORCH:
    import logging
    import shutil
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    import cca_scale
    from cca_scale import ActivationStore
    from cca_scale.analysis import timestep_distances
    from cca_scale.demo.sweep import load_dataset

    torch.manual_seed(0)
    torch.set_num_threads(1)
    # scikit-learn's bundled digits, split once (the same split as the other notebooks), each
    # image read as a sequence: (n, timesteps = rows, features).
    data = load_dataset()
    x_train, x_test = (x.reshape(-1, 8, 8).astype(np.float32) for x in (data.x_train, data.x_test))
    y_train, y_test = data.y_train, data.y_test

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
          f"test acc {test_acc:.3f}")

# %%
if HAVE_TORCH:
    metrics = ("pwcca", "mean_cca", "cosine")
    D = {m: timestep_distances(hidden, metric=m) for m in metrics}
    print(D["pwcca"].to_pandas().round(2))

# %%
if HAVE_TORCH:
    client = cca_scale.launch("local", n_workers=2, dashboard_address="127.0.0.1:0",
                              silence_logs=logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="cca-scale-notebook-"))
    store = ActivationStore.create(workdir / "acts.zarr", n_datapoints=len(x_train))
    store.add("lstm-s0", "hidden", hidden, timesteps=True)
    E = cca_scale.compare(store, layer="hidden", timestep="all", out=workdir / "t.zarr",
                          client=client)
    print(E.labels)
    engine_matches = bool(np.allclose(E.values, D["pwcca"].values, atol=1e-8))
    client.close()  # and the cluster launch() started
    shutil.rmtree(workdir)
    print("engine == in-memory:", engine_matches)

# %%
if HAVE_TORCH:
    T = hidden.shape[1]
    def adjacent(M):
        return float(np.mean([M.values[t, t + 1] for t in range(T - 1)]))
    for m in metrics:
        print(f"RESULT {m}_adjacent={adjacent(D[m]):.4f}")
        print(f"RESULT {m}_first_last={D[m].values[0, T - 1]:.4f}")
    print(f"RESULT engine_matches={engine_matches}")
    print(f"RESULT test_accuracy={test_acc:.4f}")

# %% [markdown]
# **Reading the RESULT lines.** Compare each metric's distance between neighbouring timesteps with
# its distance between the first and the last one. Cosine distance compares unit by unit, so it
# also counts changes that are only a linear transform of the state; CCA does not. Even for
# PWCCA the first and last timesteps stay far apart: over a sequence the hidden state changes in
# ways no linear map undoes, as the paper found (Fig A3).
