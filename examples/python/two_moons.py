#!/usr/bin/python3
"""Two moons from Python: trains the RealNVP of examples/moons.flow on two-moons points given as
NumPy arrays, prints the test NLL, and draws the learned density next to the data and samples.

    PYTHONPATH=build/frontends/python /usr/bin/python3 examples/python/two_moons.py

--steps (default 2000, about a minute on 2 cores in a release build), --out (the plot, default
two_moons.png; written when matplotlib is installed: apt-get install python3-matplotlib).
"""
import argparse
import pathlib

import numpy as np

import flowgrad

SPEC = pathlib.Path(__file__).resolve().parents[1] / "moons.flow"


def train(steps):
    # Any [N, 2] float array works as data; here flowgrad's own generator makes it (FFJORD's
    # moons: noise 0.1, scaled by 2), the same the spec's `data` line names.
    data = flowgrad.load_data("moons n=20000 test_n=5000 noise=0.1 scale=2")

    def progress(step):
        if step.step % 250 == 0:
            print(f"step {step.step:5d}  train NLL {step.loss:.3f} {step.unit}")

    result = flowgrad.train(SPEC, data=(data.train, data.test), steps=steps, callback=progress)
    print(f"test NLL: {result.test_loss:.3f} nats (the entropy of the data is about 2.39)")
    return result.flow, data.test


def plot(flow, test, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (apt-get install python3-matplotlib): no plot written")
        return
    side = np.linspace(-3.5, 3.5, 240)
    grid = np.stack(np.meshgrid(side, side), axis=-1).reshape(-1, 2)
    density = np.exp(flow.log_prob(grid)).reshape(len(side), len(side))
    samples = flow.sample(3000, seed=1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    axes[0].scatter(test[:3000, 0], test[:3000, 1], s=1, c="black")
    axes[0].set_title("test data")
    axes[1].imshow(density, origin="lower", extent=(side[0], side[-1], side[0], side[-1]), cmap="magma")
    axes[1].set_title("learned density p(x)")
    axes[2].scatter(samples[:, 0], samples[:, 1], s=1, c="tab:blue")
    axes[2].set_title("samples")
    for ax in axes:
        ax.set_xlim(side[0], side[-1])
        ax.set_ylim(side[0], side[-1])
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"density plot: {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", default="two_moons.png")
    args = parser.parse_args()
    flow, test = train(args.steps)
    plot(flow, test, args.out)


if __name__ == "__main__":
    main()
