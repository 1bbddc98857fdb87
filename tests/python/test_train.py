"""flowgrad.train: NumPy data and the spec's own, callbacks, checkpoints, exact resume, Ctrl-C,
and checkpoints that the `flowgrad` command reads and writes."""
import os
import re
import signal
import subprocess

import numpy as np
import pytest

import flowgrad
from conftest import SMALL_GLOW, SMALL_MOONS, built


def moons_data(n, seed):
    return flowgrad.load_data(f"moons n={n} test_n={n} seed={seed}").train


def test_train_on_numpy_arrays_lowers_the_loss():
    train, test = moons_data(1024, 1), moons_data(512, 2)
    steps = []
    r = flowgrad.train(SMALL_MOONS, data=(train, test), steps=60, callback=steps.append)
    assert r.steps == r.step == 60 and r.stopped == "steps" and r.unit == "nats"
    assert [s.step for s in steps] == list(range(1, 61)) and steps[0].unit == "nats"
    assert steps[-1].loss < steps[0].loss and all(np.isfinite(s.grad_norm) for s in steps)
    assert r.test_loss == pytest.approx(-r.flow.log_prob(test).astype(np.float64).mean(), rel=1e-4)
    untrained = -flowgrad.Flow.from_spec(SMALL_MOONS).log_prob(test).astype(np.float64).mean()
    assert r.test_loss < untrained - 0.1


def test_train_on_the_spec_data_source():
    r = flowgrad.train(SMALL_MOONS)  # `data moons n=512 test_n=256`, `steps 40`
    assert r.step == 40 and r.test_loss is not None and r.flow.event == (2,)


def test_discrete_uint8_data_reports_bits_per_dim():
    rng = np.random.default_rng(0)
    x8 = np.clip(rng.normal(128, 40, (64, 1, 8, 8)), 0, 255).astype(np.uint8)
    r = flowgrad.train(SMALL_GLOW, data={"train": x8, "test": x8[:16]}, steps=3)
    assert r.unit == "bits/dim" and r.flow.discrete and 0 < r.test_loss < 20
    bpd = r.flow.bits_per_dim(x8[:16]).mean()
    assert bpd == pytest.approx(r.test_loss, abs=0.05)  # other dequantisation noise, same model


def test_callback_stops_and_sees_the_flow():
    train = moons_data(512, 3)
    seen = []

    def callback(step):
        seen.append(r_flow[0].log_prob(train[:4]))  # the flow being trained, mid-training
        return step.step < 5

    r_flow = [None]
    flow = flowgrad.Flow.from_spec(SMALL_MOONS)
    r_flow[0] = flow
    r = flowgrad.train(flow, data=train, steps=100, callback=callback)
    assert r.stopped == "callback" and r.step == 5 and len(seen) == 5 and r.flow is flow


def test_exceptions_in_the_callback_propagate_after_saving(tmp_path):
    def callback(step):
        if step.step == 3:
            raise ArithmeticError("stop here")

    with pytest.raises(ArithmeticError, match="stop here"):
        flowgrad.train(SMALL_MOONS, steps=10, out=tmp_path, callback=callback)
    assert flowgrad.load(tmp_path / "checkpoint.safetensors").event == (2,)


def test_ctrl_c_stops_after_the_step_and_saves(tmp_path):
    def callback(step):
        if step.step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    # Python keeps SIGINT ignored when it started ignored (a job started with `&` by a script);
    # an interactive user's Ctrl-C raises KeyboardInterrupt
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            flowgrad.train(
                SMALL_MOONS, steps=1000, out=tmp_path / "run.safetensors", callback=callback
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    r = flowgrad.train(SMALL_MOONS, steps=6, resume=tmp_path / "run.safetensors")
    assert r.step == 6 and r.steps == 2  # went on from step 4


def test_resume_is_exact(tmp_path):
    data = moons_data(512, 4)
    whole = flowgrad.train(SMALL_MOONS, data=data, steps=20, out=tmp_path / "whole.safetensors")
    flowgrad.train(SMALL_MOONS, data=data, steps=12, out=tmp_path / "half")
    rest = flowgrad.train(
        SMALL_MOONS,
        data=data,
        steps=20,
        resume=tmp_path / "half" / "checkpoint.safetensors",
        out=tmp_path / "rest.safetensors",
    )
    assert rest.steps == 8
    a, b = whole.flow.state_dict(), rest.flow.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_training_a_flow_goes_on_from_its_weights():
    data = moons_data(512, 5)
    r = flowgrad.train(SMALL_MOONS, data=data, steps=30)
    before = -r.flow.log_prob(data).mean()
    again = flowgrad.train(r.flow, data=data, steps=30)  # no re-initialisation of anything
    assert again.flow is r.flow and again.step == 30
    assert -r.flow.log_prob(data).mean() < before + 0.05


def test_minutes_limit():
    r = flowgrad.train(SMALL_MOONS, minutes=0.002)  # about 0.1 s
    assert r.stopped == "minutes" and r.step >= 1


def test_the_command_reads_python_checkpoints(tmp_path):
    cli = built("FG_CLI", "the flowgrad command")
    r = flowgrad.train(SMALL_MOONS, steps=20, out=tmp_path)
    ckpt = tmp_path / "checkpoint.safetensors"
    out = subprocess.run(
        [cli, "eval", str(ckpt)], capture_output=True, text=True, check=True
    ).stdout
    assert float(re.search(r"test nats: ([-\d.]+)", out).group(1)) == pytest.approx(
        r.test_loss, abs=1e-4
    )
    saved = tmp_path / "saved.safetensors"
    r.flow.save(saved)  # weights only, zero optimiser state: still a complete checkpoint
    out = subprocess.run(
        [cli, "eval", str(saved)], capture_output=True, text=True, check=True
    ).stdout
    assert float(re.search(r"test nats: ([-\d.]+)", out).group(1)) == pytest.approx(
        r.test_loss, abs=1e-4
    )


def test_python_reads_the_commands_checkpoints(tmp_path):
    cli = built("FG_CLI", "the flowgrad command")
    spec = tmp_path / "moons.flow"
    spec.write_text(SMALL_MOONS)
    run = subprocess.run(
        [cli, "train", str(spec), "--steps", "15", "--out", str(tmp_path / "run"), "--no-dump"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cli_test = float(re.search(r"test nats: ([-\d.]+)", run).group(1))
    flow = flowgrad.load(tmp_path / "run" / "checkpoint.safetensors")
    test = flowgrad.load_data("moons n=512 test_n=256 noise=0.1 scale=2").test
    assert -flow.log_prob(test).astype(np.float64).mean() == pytest.approx(cli_test, abs=1e-3)


@pytest.mark.parametrize("name", ["nsf-moons", "nsf-rings", "maf-8gaussians", "maf-checkerboard"])
def test_the_2d_example_specs_train(name):
    """The 2-D examples (a few steps on a little data: their figures are in README): spline
    couplings and MAF layers build, the cosine schedule runs, the loss is finite."""
    from conftest import EXAMPLES

    data = flowgrad.load_data(name.split("-")[1] + " n=600 test_n=128")
    lrs = []
    r = flowgrad.train(EXAMPLES / f"{name}.flow", data=(data.train, data.test), steps=6,
                       callback=lambda info: lrs.append(info.lr))
    assert np.isfinite(r.test_loss) and len(lrs) == 6
    assert lrs[0] < lrs[-1] <= 1e-3  # still warming up
    assert r.flow.train_settings["schedule"] == "cosine"


def test_the_image_example_specs_build():
    from conftest import EXAMPLES

    for name in ("nsf-fmnist", "maf-fmnist"):
        flow = flowgrad.Flow.from_spec(EXAMPLES / f"{name}.flow", event=(1, 28, 28))
        assert flow.num_params > 100000
