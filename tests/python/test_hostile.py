"""Bad input of every kind: an exception with a message, never a crash, and nothing changed."""
import os

import numpy as np
import pytest

import flowgrad
from flowgrad import _flowgrad
from conftest import EXAMPLES, SMALL_GLOW, SMALL_MOONS

BAD_ARRAYS = [
    None,
    "abc",
    {"x": 1},
    object(),
    np.array([["a", "b"]]),
    np.zeros((2, 2), complex),
    np.zeros((2, 2), bool),
    np.array([[1, None]], dtype=object),
]


@pytest.mark.parametrize(
    "x", BAD_ARRAYS, ids=lambda x: type(x).__name__ + str(getattr(x, "dtype", ""))
)
def test_wrong_types_and_dtypes(moons, x):
    for method in (moons.log_prob, moons.forward, moons.inverse, moons.data_init):
        with pytest.raises(TypeError):
            method(x)
    with pytest.raises(TypeError):
        moons.bits_per_dim(x)


@pytest.mark.parametrize("shape", [(), (2,), (3, 3), (3, 2, 1), (1, 1, 2)])
def test_wrong_shapes(moons, shape):
    x = np.zeros(shape, np.float32)
    for method in (moons.log_prob, moons.forward, moons.inverse, moons.data_init):
        with pytest.raises(ValueError, match="shape"):
            method(x)


def test_one_sample_without_a_batch_axis_says_so(glow):
    with pytest.raises(ValueError, match=r"add a batch axis"):
        glow.log_prob(np.zeros((1, 8, 8), np.float32))


def test_non_finite_inputs_give_nan_rows_not_crashes(moons):
    x = np.array(
        [[0.1, 0.2], [np.nan, 0.0], [np.inf, 1.0], [-np.inf, np.nan], [0.3, -0.1]], np.float32
    )
    logp = moons.log_prob(x)
    assert np.isfinite(logp[[0, 4]]).all() and not np.isfinite(logp[1:4]).any()
    z, ld = moons.forward(x)
    assert np.isfinite(z[0]).all()


def test_non_contiguous_and_odd_layouts_are_converted(glow, images):
    want = glow.log_prob(images)
    for x in (
        images[:, :, ::-1, :][:, :, ::-1, :],
        np.asfortranarray(images),
        images.astype(">f4"),
        images.astype(np.float64),
        images.tolist(),
    ):
        np.testing.assert_allclose(glow.log_prob(x), want, rtol=1e-6, atol=1e-4)
    double = np.repeat(images, 2, axis=0)[::2]  # a strided view over every other sample
    np.testing.assert_allclose(glow.log_prob(double), want, rtol=1e-6, atol=1e-4)


def test_the_engine_checks_for_itself(moons):
    """flowgrad._flowgrad is callable directly: it must refuse what the package would convert."""
    c = moons._c
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(TypeError):
        c.log_prob(x.astype(np.float64))
    with pytest.raises(TypeError):
        c.log_prob(x.astype(">f4"))
    with pytest.raises(ValueError, match="contiguous"):
        c.log_prob(np.zeros((2, 3), np.float32).T)
    with pytest.raises(ValueError):
        c.log_prob(np.zeros((0, 2), np.float32))
    with pytest.raises(ValueError):
        c.log_prob(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="axes"):
        c.run_layer(0, np.zeros((1,) * 9, np.float32), False)
    with pytest.raises(TypeError):
        c.log_prob()
    with pytest.raises(TypeError):
        c.inverse(x, "latents")
    with pytest.raises(ValueError):
        c.inverse(x, [x])
    with pytest.raises(ValueError):
        c.sample(0, 1.0, 0)
    with pytest.raises(ValueError):
        c.sample(3, float("nan"), 0)
    with pytest.raises(OverflowError):
        c.sample(3, 1.0, -1)
    with pytest.raises(IndexError):
        c.run_layer(99, x, False)
    with pytest.raises(TypeError):
        c.load_state_dict([("0.affine_coupling.rescale",)], False)
    with pytest.raises(KeyError):
        c.load_state_dict([("nope", np.zeros(1, np.float32))], False)
    with pytest.raises(TypeError):
        c.load_state_dict([("0.affine_coupling.rescale", np.zeros(1))], False)  # float64
    with pytest.raises(ValueError):
        c.load_state_dict([("0.affine_coupling.rescale", np.zeros(2, np.float32))], False)
    with pytest.raises(ValueError):
        c.load_state_dict([], True)
    with pytest.raises(ValueError):
        c.dump("/tmp/x.dot", "everything", 1, False)
    with pytest.raises(TypeError):
        _flowgrad.Flow()
    with pytest.raises(TypeError):
        _flowgrad.train(c, x, None, False, 1, 0.0, None, None, 42, 0, 0)  # callback not callable
    with pytest.raises(ValueError):
        _flowgrad.train(c, x, None, False, 0, 0.0, None, None, None, 0, 0)
    with pytest.raises(ValueError):
        _flowgrad.check("actnorm", None, None, 0, 1e-6, 0.1, False, 0)
    with pytest.raises(ValueError):
        _flowgrad.flow_from_spec(SMALL_MOONS, "x", (2, -1), None, "float32", None)
    with pytest.raises(ValueError):
        _flowgrad.flow_from_spec(SMALL_MOONS, "x", None, None, "float16", None)
    with pytest.raises(ValueError):
        _flowgrad.open_data("moons", -1)


@pytest.mark.parametrize("n", [0, -1])
def test_sample_counts(moons, n):
    with pytest.raises(ValueError):
        moons.sample(n)


@pytest.mark.parametrize("n", [1.5, "3", None, True])
def test_sample_count_types(moons, n):
    with pytest.raises(TypeError):
        moons.sample(n)


@pytest.mark.parametrize("t", [float("nan"), float("inf"), -1.0])
def test_sample_temperatures(moons, t):
    with pytest.raises(ValueError):
        moons.sample(2, temperature=t)
    with pytest.raises(TypeError):
        moons.sample(2, temperature="hot")


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_sample_seeds(moons, seed):
    with pytest.raises(ValueError):
        moons.sample(2, seed=seed)
    with pytest.raises(TypeError):
        moons.sample(2, seed=1.5)


def test_bad_specs():
    with pytest.raises(FileNotFoundError):
        flowgrad.Flow.from_spec("/nonexistent/model.flow")
    with pytest.raises(TypeError):
        flowgrad.Flow.from_spec(b"data moons\n")
    with pytest.raises(flowgrad.Error) as e:
        flowgrad.Flow.from_spec("data moons\nflow\n  no_such_layer x=1\nend\n")
    assert e.value.status == "FG_E_FORMAT" and "no_such_layer" in e.value.message
    assert isinstance(e.value, RuntimeError) and str(e.value) == e.value.message
    with pytest.raises(flowgrad.Error) as e:
        flowgrad.Flow.from_spec("data moons\nflow\n  affine_coupling hidden=banana\nend\n")
    assert "hidden" in str(e.value)
    with pytest.raises(flowgrad.Error, match=r"<spec>:\d+"):
        flowgrad.Flow.from_spec("data moons\nflow\n  affine_coupling\n")  # block not closed
    with pytest.raises(ValueError, match="no 'data' line"):
        flowgrad.Flow.from_spec("flow\n  affine_coupling mask=half, net=mlp\nend\n")
    with pytest.raises(flowgrad.Error) as e:
        flowgrad.Flow.from_spec(SMALL_GLOW, event=(2,))  # a Glow on vectors
    assert e.value.status == "FG_E_SHAPE"
    with pytest.raises(ValueError):
        flowgrad.Flow.from_spec(SMALL_MOONS.replace("batch 64", "batch 64\0"))
    with pytest.raises(ValueError):
        flowgrad.Flow.from_spec(SMALL_MOONS, dtype="int8")
    with pytest.raises(ValueError):
        flowgrad.Flow.from_spec(SMALL_MOONS, event=(0,))
    with pytest.raises(flowgrad.Error):
        flowgrad.Flow.from_spec(
            "data npy:/nonexistent.npy\nflow\n  affine_coupling mask=half, net=mlp\nend\n"
        )


def test_missing_and_malformed_checkpoints(tmp_path, moons):
    with pytest.raises(FileNotFoundError):
        flowgrad.load(tmp_path / "missing.safetensors")
    with pytest.raises(flowgrad.Error):
        flowgrad.load(tmp_path)  # a directory
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(300))
    with pytest.raises(flowgrad.Error):
        flowgrad.load(garbage)
    good = tmp_path / "good.safetensors"
    moons.save(good)
    data = good.read_bytes()
    for cut in (0, 4, 8, 9, 60, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(flowgrad.Error) as e:
            flowgrad.load(bad)
        assert e.value.status in ("FG_E_FORMAT", "FG_E_IO")
    header_len = int.from_bytes(data[:8], "little")
    damaged = [
        data[:8] + b"X" + data[9:],  # not JSON
        len(data).to_bytes(8, "little") + data[8:],  # a header longer than the file
        (header_len - 40).to_bytes(8, "little") + data[8:],  # cut inside the JSON
        data.replace(b'"param/', b'"xaram/', 1),  # a parameter missing
        data.replace(b"flowgrad-checkpoint-1", b"flowgrad-checkpoint-9"),
    ]
    for i, bad in enumerate(damaged):
        (tmp_path / f"damaged{i}.safetensors").write_bytes(bad)
        with pytest.raises(flowgrad.Error) as e:
            flowgrad.load(tmp_path / f"damaged{i}.safetensors")
        assert e.value.status in ("FG_E_FORMAT", "FG_E_IO", "FG_E_NOTFOUND"), e.value


def test_checkpoint_of_another_model_is_refused(tmp_path, glow):
    glow.save(tmp_path / "glow.safetensors")
    with pytest.raises(flowgrad.Error) as e:
        flowgrad.train(SMALL_MOONS, steps=1, resume=tmp_path / "glow.safetensors")
    assert e.value.status == "FG_E_FORMAT"


def test_bad_state_dicts_change_nothing(moons):
    before = moons.state_dict()
    name = "0.affine_coupling.rescale"
    cases = [
        ({**before, "nope": np.zeros(1)}, KeyError),
        ({**before, name: np.zeros(2)}, ValueError),
        ({**before, name: np.array([np.nan])}, ValueError),
        ({**before, name: np.array(["a"])}, TypeError),
        ({**before, 3: np.zeros(1)}, TypeError),
        ({**before, "param/" + name: np.zeros(1)}, ValueError),  # given twice
        ([("a", 1)], TypeError),
    ]
    for state, error in cases:
        with pytest.raises(error):
            moons.load_state_dict(state)
        for k, v in moons.state_dict().items():
            np.testing.assert_array_equal(v, before[k])


def test_bad_training_arguments(tmp_path):
    good = np.random.default_rng(0).standard_normal((128, 2)).astype(np.float32)
    nan = good.copy()
    nan[5, 1] = np.nan
    cases = [
        ({"data": nan}, ValueError),
        ({"data": good[:10]}, ValueError),
        ({"data": good.reshape(128, 2, 1)}, flowgrad.Error),
        ({"data": good[:, :1]}, flowgrad.Error),
        ({"data": good.ravel()}, ValueError),
        ({"data": (good, good[:, :1])}, ValueError),
        ({"data": (good, good, good)}, ValueError),
        ({"data": good, "discrete": True}, ValueError),
        ({"data": good, "steps": -1}, ValueError),
        ({"data": good, "minutes": float("nan")}, ValueError),
        ({"data": good, "steps": 0, "minutes": 0}, ValueError),
        ({"data": good, "callback": 3}, TypeError),
        ({"data": good, "resume": tmp_path / "missing"}, FileNotFoundError),
        ({"data": "abc"}, TypeError),
        ({"data": good, "threads": -2}, ValueError),
    ]
    for kwargs, error in cases:
        with pytest.raises(error):
            flowgrad.train(SMALL_MOONS, **kwargs)
    with pytest.raises(FileNotFoundError):
        flowgrad.train(tmp_path / "missing.flow")


def test_bad_plugins_and_checks(tmp_path):
    with pytest.raises(FileNotFoundError):
        flowgrad.load_plugin(tmp_path / "missing.so")
    text = tmp_path / "not_a_library.so"
    text.write_text("hello")
    with pytest.raises(flowgrad.Error) as e:
        flowgrad.load_plugin(text)
    assert e.value.status == "FG_E_PLUGIN"
    with pytest.raises(flowgrad.Error) as e:
        flowgrad.check("no_such_type")
    assert e.value.status == "FG_E_NOTFOUND"
    with pytest.raises(flowgrad.Error):
        flowgrad.check("affine_coupling", args="hidden=-3")
    with pytest.raises(flowgrad.Error):
        flowgrad.check("squeeze", event=(3,))  # squeeze needs images
    with pytest.raises(ValueError):
        flowgrad.check("actnorm", event=(0, 2))
    with pytest.raises(TypeError):
        flowgrad.check(3)


def test_bad_dumps(tmp_path, moons):
    with pytest.raises(flowgrad.Error) as e:
        moons.dump(tmp_path / "graph.jpeg")
    assert e.value.status == "FG_E_MISUSE"
    with pytest.raises(ValueError):
        moons.dump(tmp_path / "g.dot", what="everything")
    with pytest.raises(flowgrad.Error):
        moons.dump(tmp_path / "no" / "such" / "dir" / "g.dot")
    with pytest.raises(flowgrad.Error):
        moons.save(tmp_path / "no" / "such" / "dir" / "m.safetensors")


def test_bits_per_dim_wants_uint8(glow):
    with pytest.raises(TypeError, match="uint8"):
        glow.bits_per_dim(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError):
        glow.bits_per_dim(np.zeros((1, 8, 8), np.uint8))


def test_errors_from_the_examples_name_the_file():
    with pytest.raises(flowgrad.Error, match="moons.flow"):
        flowgrad.Flow.from_spec(EXAMPLES / "moons.flow", event=(1, 28, 28))
