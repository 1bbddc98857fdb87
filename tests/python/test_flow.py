"""Flow: building, evaluating, sampling, parameters, checkpoints and dumps."""
import gc
import threading
import weakref

import numpy as np
import pytest

import flowgrad
from conftest import EXAMPLES, SMALL_GLOW, SMALL_MOONS


def test_from_spec_path_and_text_agree():
    a = flowgrad.Flow.from_spec(EXAMPLES / "moons.flow")
    b = flowgrad.Flow.from_spec((EXAMPLES / "moons.flow").read_text())
    assert a.event == b.event == (2,)
    assert a.num_params == b.num_params > 0
    x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    np.testing.assert_array_equal(a.log_prob(x), b.log_prob(x))  # same spec, same seed
    assert [t for _, t in a.layers] == ["affine_coupling"] * 8
    assert a.spec.startswith("# RealNVP on two moons") and not a.discrete and a.dtype == np.float32


def test_event_from_the_spec_data_source_and_discreteness():
    flow = flowgrad.Flow.from_spec(SMALL_MOONS)
    assert flow.event == (2,) and not flow.discrete
    glow = flowgrad.Flow.from_spec(SMALL_GLOW, event=(1, 8, 8))
    assert glow.discrete and glow.prior == "learned"
    assert glow.latent_shapes == [(8, 2, 2), (2, 4, 4)]
    assert glow.latent_shape == (8, 2, 2)


def test_log_prob_is_base_log_prob_plus_logdet(glow, images):
    z, logdet = glow.forward(images)
    assert isinstance(z, list) and [p.shape[1:] for p in z] == glow.latent_shapes
    # a flat (non-learned) base would be log N(z); here the top prior is learned and perturbed,
    # so check through the prior's parameters
    sd = glow.state_dict()
    mean, logstd = sd["prior.mean"], sd["prior.logstd"]
    top = z[0]
    base = (
        (-0.5 * ((top - mean) / np.exp(logstd)) ** 2 - logstd - 0.5 * np.log(2 * np.pi))
        .reshape(len(top), -1)
        .sum(1)
    )
    np.testing.assert_allclose(glow.log_prob(images), base + logdet, rtol=1e-5, atol=1e-3)


def test_forward_inverse_round_trip(glow, images):
    z, logdet = glow.forward(images)
    x, inv_logdet = glow.inverse(z)
    np.testing.assert_allclose(x, images, atol=2e-5)
    np.testing.assert_allclose(inv_logdet, -logdet, rtol=1e-4, atol=1e-2)
    z2, _ = glow.forward(x)
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(z, z2))


def test_forward_of_a_flow_without_factor_out_is_an_array(moons):
    x = np.random.default_rng(1).standard_normal((7, 2)).astype(np.float32)
    z, logdet = moons.forward(x)
    assert isinstance(z, np.ndarray) and z.shape == (7, 2) and logdet.shape == (7,)
    base = -0.5 * (z**2).sum(1) - np.log(2 * np.pi)
    np.testing.assert_allclose(moons.log_prob(x), base + logdet, rtol=1e-5, atol=1e-5)
    back, _ = moons.inverse(z)
    np.testing.assert_allclose(back, x, atol=1e-5)


def test_sample_is_deterministic_per_seed(glow):
    a = glow.sample(4, temperature=0.7, seed=11)
    b = glow.sample(4, temperature=0.7, seed=11)
    c = glow.sample(4, temperature=0.7, seed=12)
    assert a.shape == (4, 1, 8, 8) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(glow.sample(2), glow.sample(2))  # seed None: fresh draws
    mode = glow.sample(3, temperature=0)  # the mode: the same whatever the seed
    np.testing.assert_allclose(mode[0], mode[2], atol=1e-5)


def test_samples_map_back_to_their_latents(moons):
    x = moons.sample(50, temperature=1.0, seed=3)
    assert np.isfinite(moons.log_prob(x)).all()


def test_bits_per_dim_follows_the_dequantisation_formula(glow):
    x8 = np.random.default_rng(2).integers(0, 256, (3, 1, 8, 8)).astype(np.uint8)
    bpd = glow.bits_per_dim(x8, seed=5)
    u = np.random.default_rng(5).random(x8.shape)
    logp = glow.log_prob((x8 + u) / 256).astype(np.float64)
    np.testing.assert_allclose(bpd, (-logp + 64 * np.log(256)) / (64 * np.log(2)), rtol=1e-12)
    np.testing.assert_array_equal(bpd, glow.bits_per_dim(x8, seed=5))


def test_state_dict_round_trip_and_cached_programs_see_new_weights(moons):
    x = np.random.default_rng(3).standard_normal((5, 2)).astype(np.float32)
    before = moons.log_prob(x)  # compiles and caches the log-prob program
    sd = moons.state_dict()
    assert list(sd)[0] == "0.affine_coupling.net.hidden0.w" and sd[
        "0.affine_coupling.net.hidden0.w"
    ].shape == (1, 16)
    changed = {k: v * 0.5 for k, v in sd.items()}
    moons.load_state_dict(changed)
    after = moons.log_prob(x)
    assert not np.allclose(before, after)
    for k, v in moons.state_dict().items():
        np.testing.assert_array_equal(v, changed[k].astype(np.float32))
    moons.load_state_dict({"param/" + k: v for k, v in sd.items()})  # checkpoint names work too
    np.testing.assert_array_equal(moons.log_prob(x), before)
    sd["0.affine_coupling.rescale"][:] = 99  # a copy: the flow is not touched
    np.testing.assert_array_equal(moons.log_prob(x), before)


def test_partial_state_dict_needs_strict_false(moons):
    name = "0.affine_coupling.rescale"
    with pytest.raises(KeyError, match="missing"):
        moons.load_state_dict({name: np.full(1, 2.0)})
    moons.load_state_dict({name: np.full(1, 2.0)}, strict=False)
    assert moons.state_dict()[name][0] == 2.0


def test_save_and_load(tmp_path, glow, images):
    path = glow.save(tmp_path / "glow.safetensors")
    again = flowgrad.load(path)
    assert again.spec == glow.spec and again.event == glow.event and again.discrete
    np.testing.assert_array_equal(again.log_prob(images), glow.log_prob(images))
    for k, v in again.state_dict().items():
        np.testing.assert_array_equal(v, glow.state_dict()[k])


def test_float64_flows(tmp_path):
    flow = flowgrad.Flow.from_spec(SMALL_MOONS, dtype="float64")
    x = np.random.default_rng(4).standard_normal((3, 2))
    assert flow.dtype == np.float64 and flow.log_prob(x).dtype == np.float64
    again = flowgrad.load(flow.save(tmp_path / "f64.safetensors"))
    assert again.dtype == np.float64
    np.testing.assert_array_equal(again.log_prob(x), flow.log_prob(x))


def test_data_init_standardises_the_first_actnorm(images):
    flow = flowgrad.Flow.from_spec(SMALL_GLOW, event=(1, 8, 8))
    flow.data_init(images)
    sd = flow.state_dict()
    assert np.abs(sd["2.actnorm.bias"]).max() > 0 and np.abs(sd["2.actnorm.logs"]).max() > 0
    h, _ = flow.run_layer(1, flow.run_layer(0, images)[0])  # affine, squeeze
    y, _ = flow.run_layer(2, h)  # the first actnorm
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, atol=1e-3)


def test_inputs_are_viewed_not_copied_and_kept_alive(moons):
    x = np.random.default_rng(5).standard_normal((9, 2)).astype(np.float32)
    keep = x.copy()
    ref = weakref.ref(x)
    logp = moons.log_prob(x)
    assert moons._c._bound()["log_prob"] == [x.ctypes.data]  # the program reads x's own memory
    del x
    gc.collect()
    assert ref() is not None  # still bound: kept alive
    np.testing.assert_array_equal(moons.log_prob(keep), logp)  # rebinding lets it go
    gc.collect()
    assert ref() is None
    f64 = keep.astype(np.float64)
    moons.log_prob(f64)  # another dtype is converted (copied) first
    assert moons._c._bound()["log_prob"] != [f64.ctypes.data]
    strided = np.asfortranarray(np.stack([keep[:, 0], keep[:, 1]], 1))
    np.testing.assert_array_equal(moons.log_prob(strided), logp)


def test_inputs_are_not_written(glow, images):
    keep = images.copy()
    z, _ = glow.forward(images)
    zs = [p.copy() for p in z]
    glow.log_prob(images)
    glow.inverse(z)
    np.testing.assert_array_equal(images, keep)
    assert all(np.array_equal(a, b) for a, b in zip(z, zs))


def test_concurrent_calls_from_threads(glow, images):
    want = glow.log_prob(images)
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append(glow.log_prob(images))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 9
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_empty_batches(glow):
    assert glow.log_prob(np.zeros((0, 1, 8, 8), np.float32)).shape == (0,)
    z, ld = glow.forward(np.zeros((0, 1, 8, 8)))
    assert [p.shape for p in z] == [(0, 8, 2, 2), (0, 2, 4, 4)] and ld.shape == (0,)
    assert glow.inverse(z)[0].shape == (0, 1, 8, 8)


def test_dump(tmp_path, moons):
    n = moons.dump(tmp_path / "g.dot")
    text = (tmp_path / "g.dot").read_text()
    assert n > 10 and text.startswith("digraph") and "affine_coupling" in text
    assert moons.dump(tmp_path / "c.dot", compiled=True) > 0
    assert moons.dump(tmp_path / "t.dot", what="train") > n  # + every gradient
    assert moons.dump(tmp_path / "s.svg", what="sample", batch=2) > 0
    assert (tmp_path / "s.svg").read_text().lstrip().startswith("<?xml")


def test_repr(moons):
    assert "4 layers" in repr(moons) and "event (2,)" in repr(moons)
