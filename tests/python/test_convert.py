"""flowgrad.convert: the PyTorch reference models' weights in and out.  The torch tests compare
log p(x) with ../shared/peers/torch_flows.py on the same batch of Fashion-MNIST images (1e-5
relative, float32) and are skipped when torch or the reference is not installed; the others
run without torch."""
import copy
import pathlib
import os
import sys

import numpy as np
import pytest

import flowgrad
import flowgrad.convert as fc
from conftest import EXAMPLES, ROOT, SMALL_GLOW, SMALL_MOONS, perturb

TOL = 1e-5  # relative, float32


def rel_err(ours, reference):
    return float(np.abs(np.asarray(ours, np.float64) - reference).max() / np.abs(reference).max())


def images(n, side=28, seed=0):
    """n dequantised Fashion-MNIST test images [n, 1, side, side] in [0, 1) (synthetic blobs
    when the data set is not installed)."""
    rng = np.random.default_rng(seed)
    try:
        x8 = flowgrad.load_data("fashion-mnist", limit=1).test[:n, :, :side, :side]
    except flowgrad.Error:
        grid = np.linspace(-1, 1, side)
        blobs = np.exp(
            -(grid[None, :, None] ** 2 + grid[None, None, :] ** 2) * rng.uniform(1, 4, (n, 1, 1))
        )
        x8 = np.floor(255 * blobs)[:, None]
    return ((x8 + rng.random(x8.shape)) / 256).astype(np.float32)


# ---- without torch: flowgrad -> reference state dict -> flowgrad ----


def test_glow_names_shapes_and_round_trip():
    flow = flowgrad.Flow.from_spec(
        SMALL_GLOW.replace("prior learned", "prior normal"), event=(1, 8, 8)
    )
    x = images(6, side=8)
    flow.data_init(x)
    perturb(flow, 0.05)
    sd = fc.torch_state_dict(flow)
    assert (
        sd["levels.0.0.actnorm.bias"].shape == (1, 4, 1, 1) and sd["levels.0.0.actnorm.inited"] == 1
    )
    assert sd["levels.1.1.coupling.nn.4.weight"].shape == (8, 16, 3, 3)
    assert sd["priors.0.weight"].shape == (4, 2, 3, 3) and "priors.1.weight" not in sd
    inv = {
        k[len("levels.0.0.invconv.") :]: v
        for k, v in sd.items()
        if k.startswith("levels.0.0.invconv.")
    }
    assert sorted(inv) == ["eye", "l", "lmask", "log_s", "p", "sign_s", "u"]
    w = (
        inv["p"]
        @ (inv["l"] * inv["lmask"] + inv["eye"])
        @ (inv["u"] * inv["lmask"].T + np.diag(inv["sign_s"] * np.exp(inv["log_s"])))
    )
    y, _ = flow.run_layer(3, np.eye(4).reshape(4, 4, 1, 1))
    np.testing.assert_allclose(w, y[:, :, 0, 0].T, rtol=1e-5, atol=1e-6)
    back = fc.from_torch_state_dict(sd, shape=(1, 8, 8))
    assert [t for _, t in back.layers].count("conv1x1") == 4  # the plain 1x1 convolution
    assert rel_err(back.log_prob(x), flow.log_prob(x).astype(np.float64)) < TOL


def test_realnvp_and_moons_round_trips():
    spec = (
        (EXAMPLES / "realnvp-fmnist.flow")
        .read_text()
        .replace("hidden=64, blocks=4", "hidden=8, blocks=1")
    )
    spec = spec.replace("hidden=128, blocks=4", "hidden=16, blocks=1")
    flow = flowgrad.Flow.from_spec(spec, event=(1, 8, 8))
    rng = np.random.default_rng(1)
    flow.load_state_dict(
        {
            k: v if ".prior." in k else v + 0.02 * rng.standard_normal(v.shape)
            for k, v in flow.state_dict().items()
        }
    )
    sd = fc.torch_state_dict(flow)
    assert (
        sd["scales.0.0.1.mask"].shape == (1, 1, 8, 8) and sd["scales.0.0.1.mask"][0, 0, 0, 1] == 1
    )
    assert sd["scales.0.1.2.st.inp.weight"].shape == (16, 2, 3, 3) and sd[
        "scales.1.0.3.scale"
    ].shape == (1, 2, 1, 1)
    x = images(5, side=8)
    back = fc.from_torch_state_dict(sd)
    assert rel_err(back.log_prob(x), flow.log_prob(x).astype(np.float64)) < TOL
    moons = flowgrad.Flow.from_spec(EXAMPLES / "moons.flow")
    moons.load_state_dict(
        {
            k: v if k.endswith("rescale") else v + 0.05 * rng.standard_normal(v.shape)
            for k, v in moons.state_dict().items()
        }
    )
    sd = fc.torch_state_dict(moons)
    assert sd["layers.7.net.0.weight"].shape == (64, 1) and sd["layers.7.net.4.weight"].shape == (
        2,
        64,
    )
    z = rng.standard_normal((50, 2)).astype(np.float32)
    assert (
        rel_err(fc.from_torch_state_dict(sd).log_prob(z), moons.log_prob(z).astype(np.float64))
        < TOL
    )


def test_what_the_reference_cannot_hold_is_refused(glow):
    with pytest.raises(ValueError, match="top prior"):
        fc.torch_state_dict(glow)  # a perturbed learned top prior
    moons = flowgrad.Flow.from_spec(SMALL_MOONS)
    fc.torch_state_dict(moons)  # c = 1 at initialisation: fine
    perturb(moons, 0.1)
    with pytest.raises(ValueError, match="c of c·tanh"):
        fc.torch_state_dict(moons)
    with pytest.raises(ValueError, match="not the reference's"):
        fc.torch_state_dict(moons, kind="glow")
    with pytest.raises(ValueError, match="shape"):
        fc.from_torch_state_dict(
            fc.torch_state_dict(
                flowgrad.Flow.from_spec(
                    SMALL_GLOW.replace("prior learned", "prior normal"), event=(1, 8, 8)
                )
            )
        )
    with pytest.raises(ValueError):
        fc.kind_of({"weight": np.zeros(1)})


# ---- with torch: the reference itself ----


def reference():
    torch = pytest.importorskip("torch")
    candidates = [
        os.environ.get("FG_TORCH_PEERS", ""),
        ROOT.parent / "shared" / "peers",
        ROOT.parent.parent / "shared" / "peers",
    ]
    for d in candidates:
        if d and (pathlib.Path(d) / "torch_flows.py").exists():
            sys.path.insert(0, str(d))
            import torch_flows

            torch.manual_seed(0)
            return torch, torch_flows
    pytest.skip("../shared/peers/torch_flows.py not found (FG_TORCH_PEERS)")


def torch_log_prob(torch, model, x):
    with torch.no_grad():
        return model.log_prob(torch.from_numpy(x)).double().numpy()


def trained_like(torch, model, x):
    """Actnorm initialised on x, then every parameter moved off its initial value."""
    with torch.no_grad():
        model.log_prob(torch.from_numpy(x))
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("name", ["glow", "realnvp"])
def test_from_torch_images(name):
    torch, tf = reference()
    x = images(16)
    model = (
        tf.Glow((1, 28, 28), K=8, L=2, hidden=128)
        if name == "glow"
        else tf.RealNVP((1, 28, 28), 2, 64, 4)
    )
    trained_like(torch, model, x)
    flow = fc.from_torch(model)
    assert rel_err(flow.log_prob(x), torch_log_prob(torch, model, x)) < TOL
    # the parameter counts differ where the README says: Glow's gains exp(3·logs) (+100 at K=8)
    # and RealNVP's learned prior of the factored-out half (+80); and an imported Glow's 1x1
    # convolutions are plain C x C weights instead of the factors L, U, log|s| (C² + C fewer)
    extra = flow.num_params - sum(p.numel() for p in model.parameters())
    assert extra == (100 - 8 * (4 * 4 + 4) - 8 * (8 * 8 + 8) if name == "glow" else 80)


@pytest.mark.parametrize("additive", [False, True])
def test_from_torch_moons(additive):
    torch, tf = reference()
    model = trained_like(torch, tf.Flow2D(8, 256, additive=additive), np.zeros((2, 2), np.float32))
    x = tf.sample_moons(512).numpy()
    flow = fc.from_torch(model)
    assert rel_err(flow.log_prob(x), torch_log_prob(torch, model, x)) < TOL
    assert flow.num_params - sum(p.numel() for p in model.parameters()) == (0 if additive else 8)


def test_to_torch_glow_from_the_example_spec():
    torch, tf = reference()
    x = images(16)
    flow = flowgrad.Flow.from_spec(EXAMPLES / "glow-fmnist.flow", event=(1, 28, 28))  # conv1x1_lu
    flow.data_init(x)
    perturb(flow, 0.01)
    model = fc.to_torch(flow, tf.Glow((1, 28, 28), K=8, L=2, hidden=128))
    assert rel_err(torch_log_prob(torch, model, x), flow.log_prob(x).astype(np.float64)) < TOL
    # and back: the reference's factors as flowgrad's plain 1x1 convolutions
    again = fc.from_torch(model)
    assert rel_err(again.log_prob(x), flow.log_prob(x).astype(np.float64)) < TOL


def test_to_torch_realnvp_and_moons():
    torch, tf = reference()
    x = images(8)
    flow = flowgrad.Flow.from_spec(EXAMPLES / "realnvp-fmnist.flow", event=(1, 28, 28))
    rng = np.random.default_rng(2)
    flow.load_state_dict(
        {
            k: v if ".prior." in k else v + 0.01 * rng.standard_normal(v.shape)
            for k, v in flow.state_dict().items()
        }
    )
    model = fc.to_torch(flow, tf.RealNVP((1, 28, 28), 2, 64, 4))
    assert rel_err(torch_log_prob(torch, model, x), flow.log_prob(x).astype(np.float64)) < TOL
    moons = flowgrad.train(EXAMPLES / "moons.flow", steps=20).flow
    moons.load_state_dict(
        {k: np.ones_like(v) for k, v in moons.state_dict().items() if k.endswith("rescale")},
        strict=False,
    )
    net = fc.to_torch(moons, tf.Flow2D(8, 64))
    z = tf.sample_moons(256).numpy()
    assert rel_err(torch_log_prob(torch, net, z), moons.log_prob(z).astype(np.float64)) < TOL


def test_to_torch_refuses_another_architecture():
    torch, tf = reference()
    flow = flowgrad.Flow.from_spec(
        SMALL_GLOW.replace("prior learned", "prior normal"), event=(1, 8, 8)
    )
    with pytest.raises((ValueError, RuntimeError)):
        fc.to_torch(flow, tf.Glow((1, 8, 8), K=3, L=2, hidden=16))
    model = tf.Glow((1, 8, 8), K=2, L=2, hidden=16)
    with pytest.raises(ValueError, match="not initialised"):
        fc.from_torch(model)  # actnorm waits for its first batch
    broken = copy.deepcopy(model)
    trained_like(torch, broken, images(4, side=8))
    with torch.no_grad():
        broken.levels[0][0].coupling.nn[4].weight.mul_(0)  # fine: still the same architecture
    fc.from_torch(broken)
