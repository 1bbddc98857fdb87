"""Shared fixtures of the Python binding's tests (run by `meson test`, which sets PYTHONPATH
to the built package and FG_CLI / FG_TEST_PLUGIN to the built command and example plugin)."""
import os
import pathlib

import numpy as np
import pytest

import flowgrad

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# A Glow as examples/glow-fmnist.flow builds it, small enough for a sanitizer build: 2 levels of
# 2 steps on 1x8x8 images, with a learned top prior.
SMALL_GLOW = """# a small Glow
data fashion-mnist
prior learned
flow
  affine shift=-0.5
  levels 2
    squeeze
    repeat 2
      actnorm
      conv1x1_lu
      affine_coupling mask=channel, parity=0, net=glow, hidden=16, scale=sigmoid
    end
    split
  end
end
train
  batch 8
  seed 3
end
"""

SMALL_MOONS = """data moons n=512 test_n=256 noise=0.1 scale=2
flow
  repeat 4
    affine_coupling mask=half, parity={i%2}, net=mlp, hidden=16, blocks=2, scale=exp_tanh
  end
end
train
  batch 64
  lr 5e-3
  steps 40
  seed 1
end
"""


def perturb(flow, scale, seed=0):
    """Moves every parameter off its initial value (zero-initialised layers start as the identity,
    which would make many checks trivially true)."""
    rng = np.random.default_rng(seed)
    flow.load_state_dict(
        {k: v + scale * rng.standard_normal(v.shape) for k, v in flow.state_dict().items()}
    )


@pytest.fixture
def glow():
    flow = flowgrad.Flow.from_spec(SMALL_GLOW, event=(1, 8, 8))
    perturb(flow, 0.05)
    return flow


@pytest.fixture
def moons():
    flow = flowgrad.Flow.from_spec(SMALL_MOONS)
    perturb(flow, 0.1)
    return flow


@pytest.fixture
def images():
    """Dequantised image-like values in [0, 1): [6, 1, 8, 8] float32."""
    rng = np.random.default_rng(7)
    return ((rng.integers(0, 256, (6, 1, 8, 8)) + rng.random((6, 1, 8, 8))) / 256).astype(
        np.float32
    )


def built(env, what):
    path = os.environ.get(env)
    if not path or not os.path.exists(path):
        pytest.skip(f"{what} not given ({env})")
    return path
