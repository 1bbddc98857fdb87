"""registry(), load_plugin(), check()."""
import numpy as np
import pytest

import flowgrad
from conftest import built


def test_registry_lists_the_builtins_with_their_arguments():
    types = {t.name: t for t in flowgrad.registry()}
    assert {"actnorm", "affine_coupling", "conv1x1_lu", "split", "squeeze", "logit"} <= set(types)
    assert {"rq_spline", "rq_coupling", "maf", "iaf", "tanh", "softplus", "leaky_relu", "power",
            "kumaraswamy"} <= set(types)
    coupling = types["affine_coupling"]
    assert coupling.plugin is None and coupling.doc
    args = {a.name: a for a in coupling.args}
    assert args["hidden"].kind == "int" and args["hidden"].default == "64"
    assert args["mask"].kind == "string" and args["scale"].default == "exp_tanh"
    assert types["logit"].args[0] == flowgrad.Arg(
        "alpha", "double", "0.05", types["logit"].args[0].doc
    )


def test_check_passes_and_fails():
    report = flowgrad.check("affine_coupling", "mask=half, net=mlp, hidden=4, blocks=1", event=(4,))
    assert (
        report.passed
        and report.roundtrip_err < 1e-10
        and report.edges_finite
        and "ok" in report.message
    )
    assert flowgrad.check("actnorm").passed  # the type's own check settings
    strict = flowgrad.check(
        "affine_coupling",
        "mask=half, net=mlp, hidden=4, blocks=1",
        event=(4,),
        tol=1e-300,
        gradcheck=False,
    )
    assert not strict.passed and "FAIL" in strict.message


def test_plugins_add_types_usable_in_specs():
    plugin = built("FG_TEST_PLUGIN", "the example plugin")
    added = flowgrad.load_plugin(plugin)
    assert added == ["sinh_arcsinh"]
    t = {t.name: t for t in flowgrad.registry()}["sinh_arcsinh"]
    assert t.plugin == plugin and [a.name for a in t.args] == ["skew", "tail"]
    assert flowgrad.check("sinh_arcsinh").passed
    flow = flowgrad.Flow.from_spec("flow\n  sinh_arcsinh skew=0.3, tail=1.4\nend\n", event=(3,))
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(4, 3)
    y, _ = flow.forward(x)
    np.testing.assert_allclose(y, np.sinh((np.arcsinh(x) + 0.3) * 1.4), rtol=1e-5)
    with pytest.raises(flowgrad.Error) as e:
        flowgrad.load_plugin(plugin)  # its types exist already
    assert e.value.status == "FG_E_EXISTS"


def test_the_check_command_takes_batch_perturbation_seeds_event_and_arguments():
    import subprocess

    cli = built("FG_CLI", "the flowgrad command")
    plugin = built("FG_TEST_PLUGIN", "the example plugin")
    run = subprocess.run(
        [cli, "check", "sinh_arcsinh", "--plugin", plugin, "--seeds", "3", "--batch", "5",
         "--perturb", "0.5", "--event", "2,3", "--args", "skew=0.1, tail=1.2"],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # a derived log-det is checked against the dense Jacobian, not against itself
    assert "log-det (derived: diagonal structure) vs slogdet(dense autodiff Jacobian)" in run.stdout
    assert "1 checked, 0 failed" in run.stdout
    listed = subprocess.run([cli, "list"], capture_output=True, text=True, check=True).stdout
    for name in ("rq_spline", "rq_coupling", "maf", "iaf", "kumaraswamy"):
        assert "\n" + name + " " in listed
    bad = subprocess.run([cli, "check", "exp", "--event", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--event" in bad.stderr
    bad = subprocess.run([cli, "check", "exp", "--args", "nope=1"], capture_output=True, text=True)
    assert bad.returncode == 1 and "nope" in bad.stdout
