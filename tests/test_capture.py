"""PyTorch capture with forward hooks (only where torch imports)."""

import numpy as np
import pytest
import zarr

from cca_scale import ActivationStore, capture
from cca_scale.errors import (
    ActivationError,
    InvalidNameError,
    LayerNotFoundError,
    StoreConflictError,
)

torch = pytest.importorskip("torch")

N = 64


@pytest.fixture(autouse=True)
def _torch_setup():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mlp():
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                               torch.nn.Linear(8, 3))


def _loader(x, size=16):
    """(inputs, targets) pairs, as a DataLoader yields them."""
    return [(x[i:i + size], torch.zeros(len(x[i:i + size]))) for i in range(0, len(x), size)]


def test_capture_mlp_matches_direct_forward(tmp_path):
    model, x = _mlp(), torch.randn(N, 5)
    model.train()
    store = capture(model, _loader(x, 20), ["0", "1", "3"], store=tmp_path / "s.zarr",
                    network="mlp", attrs={"lr": 0.1, "width": 8})
    assert model.training  # mode restored
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed
    store = ActivationStore.open(tmp_path / "s.zarr")
    assert store.n_datapoints == N and store.layers("mlp") == ["0", "1", "3"]
    with torch.no_grad():
        model.eval()  # capture runs in eval mode: dropout off
        hidden = model[0](x)
        expected = {"0": hidden, "1": model[1](hidden), "3": model(x)}
    for name, value in expected.items():
        got = store.read("mlp", name)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, value.numpy(), rtol=1e-5, atol=1e-6)
    assert store.attributes().loc["mlp"].to_dict() == {"lr": 0.1, "width": 8}


def test_capture_named_layers_steps_and_float64(tmp_path):
    model, x = _mlp().double(), torch.randn(N, 5, dtype=torch.float64)
    store = ActivationStore.create(zarr.storage.MemoryStore(), n_datapoints=N)
    for step in (0, 100):
        capture(model, [x[:40], x[40:]], {"hidden": "1", "out": model[3]}, store=store,
                network="m", step=step)
    assert store.layers("m") == ["hidden", "out"] and store.steps("m", "out") == [0, 100]
    got = store.read("m", "out", step=100)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, model.eval()(x).detach().numpy(), rtol=1e-12)


def test_capture_conv_net_mean_and_positions(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 6, 3, stride=2), torch.nn.Flatten(),
                              torch.nn.LazyLinear(5))
    x = torch.randn(N, 3, 7, 7)
    net(x[:2])  # materialise the lazy layer
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=N)
    capture(net, _loader(x), ["0", "2", "4"], store=store, network="cnn", conv="mean")
    with torch.no_grad():
        first = net[0](x)
        second = net[2](net[1](first))
    np.testing.assert_allclose(store.read("cnn", "0"), first.mean(dim=(2, 3)).numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(store.read("cnn", "2"), second.mean(dim=(2, 3)).numpy(),
                               rtol=1e-5, atol=1e-6)
    positions = ActivationStore.create(zarr.storage.MemoryStore())
    capture(net, _loader(x), ["0"], store=positions, network="cnn", conv="positions")
    expected = first.permute(0, 2, 3, 1).reshape(-1, 4).numpy()  # each position a datapoint
    assert positions.n_datapoints == N * 49
    np.testing.assert_allclose(positions.read("cnn", "0"), expected, rtol=1e-5, atol=1e-6)


def test_capture_recurrent_timesteps():
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(4, 6, batch_first=True)
            self.head = torch.nn.Linear(6, 2)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    model, x = Tagger(), torch.randn(N, 7, 4)
    store = ActivationStore.create(zarr.storage.MemoryStore(), n_datapoints=N)
    capture(model, _loader(x, 25), ["lstm", "head"], store=store, network="rnn",
            timesteps=True)
    assert store.timesteps("rnn", "lstm") == list(range(7))
    with torch.no_grad():
        outputs = model.lstm(x)[0]
    for t in (0, 6):
        np.testing.assert_allclose(store.read("rnn", "lstm", timestep=t), outputs[:, t].numpy(),
                                   rtol=1e-5, atol=1e-6)


def _state(store):
    return [(n, store.layers(n)) for n in store.networks()], store.attributes().to_json()


def test_capture_refusals_leave_store_unchanged(tmp_path):
    model, x = _mlp(), torch.randn(N, 5)
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=N)
    capture(model, _loader(x), ["0"], store=store, network="kept", attrs={"lr": 1})
    before = _state(store)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3))
    bad_x = x.clone()
    bad_x[50, 1] = float("nan")

    def crashing_loader():
        yield x[:32]
        raise RuntimeError("loader died")

    cases = [
        (lambda: capture(conv, [torch.randn(N, 3, 5, 5)], ["0"], store=store, network="cv"),
         ActivationError, r"network 'cv', layer '0'.*shape \(64, 2, 3, 3\).*conv='mean'"),
        (lambda: capture(model, _loader(bad_x), ["0", "3"], store=store, network="n"),
         ActivationError, "NaN"),
        (lambda: capture(model, _loader(x[:48]), ["0"], store=store, network="n"),
         StoreConflictError, r"48 datapoints.*64 datapoints"),
        (lambda: capture(model, crashing_loader(), ["0"], store=store, network="n"),
         RuntimeError, "loader died"),
        (lambda: capture(model, _loader(x), ["0"], store=store, network="kept"),
         StoreConflictError, "already exists"),
        (lambda: capture(model, _loader(x), ["0", "nope"], store=store, network="n"),
         LayerNotFoundError, r"no module 'nope'. Its modules are: '0', '1', '2', '3'"),
        (lambda: capture(model, _loader(x), ["0"], store=store, network="../n"),
         InvalidNameError, "invalid name for a network"),
        (lambda: capture(model, _loader(x), ["0"], store=store, network="n", conv="max"),
         ActivationError, r"'conv' parameter .* \['mean', 'positions'\]"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
        assert _state(store) == before
        assert all(not m._forward_hooks for m in model.modules())
    np.testing.assert_allclose(store.read("kept", "0"), model[0](x).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_module_running_twice_is_refused():
    shared = torch.nn.Linear(4, 4)
    model = torch.nn.Sequential(shared, torch.nn.ReLU(), shared)
    store = ActivationStore.create(zarr.storage.MemoryStore(), n_datapoints=N)
    with pytest.raises(ActivationError, match="ran more than once"):
        capture(model, [torch.randn(N, 4)], ["0"], store=store, network="m")
    assert store.networks() == []
