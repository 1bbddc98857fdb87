"""The pictures and records the `flowgrad` command writes (issue 17): a run's metrics.csv and
loss.png (continued on --resume), 2-D scatter and density plots, class-conditional sample grids,
latent edits and interpolations, and graph dumps grouped by layer.  Every PNG is decoded here
(chunks, CRCs, zlib data) and its size checked against what the command promises."""
import csv
import re
import struct
import subprocess
import zlib

import pytest

from conftest import built

COND_MOONS = """data moons n=2048 test_n=256 noise=0.1 scale=2
classes 2
prior conditional
flow
  repeat 4
    cond_affine_coupling mask=half, parity={i%2}, net=mlp, hidden=16, blocks=1
  end
end
train
  batch 128
  lr 3e-3
  eval_every 20
  seed 1
end
"""

COND_GLOW = """data mnist:{dir}
classes 10
prior conditional
flow
  affine shift=-0.5
  levels 2
    squeeze
    actnorm
    cond_affine_coupling mask=channel, parity=0, net=glow, hidden=4, scale=sigmoid
    cond_split
  end
end
train
  batch 8
  seed 2
end
"""


def png(path):
    """(width, height, channels) of a PNG, after decoding all of it: signature, every chunk's
    CRC, IHDR, and the zlib stream of the IDAT chunks holding exactly the rows it promises."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    at, idat, header = 8, b"", None
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} of {path}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    width, height, depth, color = header[:4]
    channels = {0: 1, 2: 3, 6: 4, 4: 2}[color]
    assert depth == 8
    assert len(zlib.decompress(idat)) == height * (1 + width * channels)
    return width, height, channels


def grid_width(cols, caption):
    """A zoomed grid of 28x28 images (84 + 1 pixels a cell) under a caption in scale-2 text (12
    pixels a glyph), with no row labels: 4 pixels of margin, or the caption's width."""
    return max(4 + cols * 85 + 1, 4 + (len(caption) * 6 - 1) * 2 + 4)


def run(*args):
    cli = built("FG_CLI", "the flowgrad command")
    return subprocess.run([cli, *map(str, args)], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("moons")
    spec = tmp / "cond-moons.flow"
    spec.write_text(COND_MOONS)
    out = tmp / "run"
    run("train", spec, "--steps", 40, "--checkpoint-every", 20, "--out", out, "--no-dump")
    return out


def test_train_writes_its_record_and_continues_it_on_resume(moons_run, tmp_path):
    rows = list(csv.DictReader(open(moons_run / "metrics.csv")))
    assert list(rows[0]) == ["step", "loss", "test_loss", "samples_per_s", "lr"]
    assert [int(r["step"]) for r in rows] == list(range(1, 41))
    assert [int(r["step"]) for r in rows if r["test_loss"]] == [20, 40]  # eval_every 20
    assert all(float(r["samples_per_s"]) > 0 and float(r["lr"]) > 0 for r in rows)
    assert png(moons_run / "loss.png") == (800, 480, 3)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "metrics.csv").write_text((moons_run / "metrics.csv").read_text())
    run("train", moons_run.parent / "cond-moons.flow", "--steps", 50,
        "--resume", moons_run / "checkpoint.safetensors", "--out", resumed, "--no-dump")
    steps = [int(r["step"]) for r in csv.DictReader(open(resumed / "metrics.csv"))]
    assert steps == list(range(1, 51)), "the resumed record continues the first, once per step"


def test_2d_pictures(moons_run, tmp_path):
    assert png(moons_run / "samples.png") == (640, 640, 3)
    assert png(moons_run / "density.png") == (640, 640, 3)
    ckpt = moons_run / "checkpoint.safetensors"
    run("sample", ckpt, "--class", "lower moon", "--n", 300, "--out", tmp_path / "s.png")
    assert png(tmp_path / "s.png") == (640, 640, 3)
    run("density", ckpt, "--class", 1, "--grid", 50, "--out", tmp_path / "d.png")
    assert png(tmp_path / "d.png") == (640, 640, 3)
    first = run("edit", ckpt, "--from", 0, "--to", 1, "--n", 5, "--per-class", 100, "--out", tmp_path / "e.png")
    assert "(cached)" not in first and png(tmp_path / "e.png") == (640, 640, 3)
    assert "(cached)" in run("edit", ckpt, "--from", 1, "--to", 0, "--n", 5, "--per-class", 100,
                             "--out", tmp_path / "e2.png")
    assert (moons_run / "checkpoint.class-means.safetensors").exists()
    bad = subprocess.run([built("FG_CLI", "flowgrad"), "sample", ckpt, "--class", "7"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a class of this model" in bad.stderr


def write_idx(path, array):
    """An IDX file (the MNIST format) of uint8 data: images [N, 28, 28] or labels [N]."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype("uint8").tobytes())


def small_mnist(folder):
    """40 training and 10 test images of 28x28, 4 and 1 of each class 0..9, with labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 10)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)


def test_class_conditional_image_pictures(tmp_path):
    small_mnist(tmp_path)
    spec = tmp_path / "cond-glow.flow"
    spec.write_text(COND_GLOW.format(dir=tmp_path))
    run("train", spec, "--steps", 2, "--out", tmp_path / "run", "--no-dump")
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    # samples.png: one row per class of 10 images, each 28x28 zoomed to 84x84, under a caption
    # line (scale-2 text: 14 + 8 pixels) and beside the class names
    width, height, channels = png(tmp_path / "run" / "samples.png")
    assert channels == 1 and height == 22 + 10 * 85 + 1 and width > 10 * 85 + 1
    run("sample", ckpt, "--class", 1, "--n", 4, "--out", tmp_path / "t.png")
    assert png(tmp_path / "t.png") == (grid_width(2, "4 samples of class 1, temperature 0.70"), 22 + 2 * 85 + 1, 1)
    out = run("edit", ckpt, "--from", 1, "--to", 3, "--n", 1, "--per-class", 2,
              "--scales", "-1,0,1", "--out", tmp_path / "edit.png")
    assert "moved towards class 3 at 3 scales" in out
    width, height, _ = png(tmp_path / "edit.png")
    assert height == 2 * 22 + 85 + 1 and width >= 3 * 85 + 1  # caption and scale labels
    run("interpolate", ckpt, "--pairs", 1, "--steps", 3, "--out", tmp_path / "i.png")
    caption = "latent interpolation between test images, one pair per row"
    assert png(tmp_path / "i.png") == (grid_width(3, caption), 22 + 85 + 1, 1)


def test_dumps_group_nodes_by_layer(tmp_path):
    spec = tmp_path / "cond-moons.flow"
    spec.write_text(COND_MOONS)
    run("dump", spec, "--out", tmp_path / "all.dot")
    dot = (tmp_path / "all.dot").read_text()
    assert "<B>1.cond_affine_coupling</B>" in dot and "<B>prior</B>" in dot
    run("dump", spec, "--what", "train", "--collapse", "--out", tmp_path / "c.dot")
    collapsed = (tmp_path / "c.dot").read_text()
    assert "cluster_layer" not in collapsed
    assert "1.cond_affine_coupling (gradient)" in collapsed
    boxes = re.findall(r"^\tL\d+ \[", collapsed, re.M)
    assert 8 <= len(boxes) <= 20, "4 layers, the prior and the loss, forward and gradient"
    run("dump", spec, "--layer", 2, "--out", tmp_path / "l.dot")
    one = (tmp_path / "l.dot").read_text()
    assert "2.cond_affine_coupling" in one and "3.cond_affine_coupling" not in one
    bad = subprocess.run([built("FG_CLI", "flowgrad"), "dump", spec, "--layer", "9", "--out", tmp_path / "x.dot"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "no node of this graph is in that layer" in bad.stderr
