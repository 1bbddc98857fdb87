"""Weights between flowgrad and the PyTorch reference models of ../shared/peers/torch_flows.py:
Glow, RealNVP (images) and the two-moons RealNVP (Flow2D; its NICE variant too).

    import flowgrad.convert as fc
    flow = fc.from_torch(torch_model)          # a flowgrad Flow with the model's weights
    fc.to_torch(flow, torch_model)             # flowgrad's weights into a reference model
    sd = fc.torch_state_dict(flow)             # {torch name: numpy array}, no torch needed

flowgrad's builders follow the reference layer for layer (flows/models.h), so a model moves by
renaming and reshaping, except where the two differ, which is handled exactly:
  - openai/glow's output gain exp(3·logs) on flowgrad's zero-initialised convolutions (the
    coupling nets' last layer, the split priors): imported as logs = 0, exported folded into
    the convolution's weight and bias;
  - flowgrad's learned priors (RealNVP's factored-out halves, a learned top prior) are the
    reference's N(0, I) when zero: imported as zeros, exported only when zero (ValueError
    otherwise); likewise the learned c of the moons couplings' c·tanh, which is 1 there;
  - the scale net's output order: the reference's RealNVP and moons nets give (raw scale,
    shift) in (even, odd) rows, flowgrad's (shift, raw scale): rows are swapped pairwise;
  - the invertible 1x1 convolutions: the reference keeps W = P·L·(U + diag(sign·exp(log|s|)))
    with P and sign as buffers; flowgrad's conv1x1_lu draws its P and sign from its seed, so
    an imported Glow uses flowgrad's plain `conv1x1` with W computed in float64, and an
    exported one gets the pivoted LU factors of flowgrad's W (read by running the layer on a
    unit image in float64) as its p, sign_s, l, u and log_s.
Linear weights are [out, in] in torch and [in, out] in flowgrad; actnorm and coupling scales
are [1, C, 1, 1] there and [C] here.

from_torch / to_torch check their result by default: log p(x) of both models on a small batch
must agree (which catches a model whose structure differs from the reference's).  torch is
imported only by the functions that take or return torch models.
"""
import copy
import re

import numpy as np

import flowgrad

__all__ = ["from_torch", "to_torch", "torch_state_dict", "from_torch_state_dict", "kind_of"]

_TRAIN = {
    "glow": "  batch 64\n  lr 1e-3\n  warmup 200\n  optimizer adam\n  clip 0\n  seed 0\n"
    "  temperature 0.7\n",
    "realnvp": "  batch 64\n  lr 1e-3\n  warmup 200\n  clip 100\n  seed 0\n",
    "moons": "  batch 512\n  lr 2e-3\n  warmup 100\n  steps 3000\n  clip 100\n  seed 0\n",
}
_DATA = {
    "glow": "fashion-mnist",
    "realnvp": "fashion-mnist",
    "moons": "moons n=20000 test_n=5000 noise=0.1 scale=2",
}


def _numpy(v):
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def _count(keys, pattern):
    """How many distinct values the first group of `pattern` takes among the keys."""
    return len({m.group(1) for k in keys for m in [re.match(pattern, k)] if m})


def kind_of(state_dict):
    """ "glow", "realnvp" or "moons" from the reference's parameter names."""
    keys = list(state_dict)
    if any(k.startswith("levels.") for k in keys):
        return "glow"
    if any(k.startswith("scales.") for k in keys):
        return "realnvp"
    if any(k.startswith("layers.") for k in keys):
        return "moons"
    raise ValueError(
        "not a state dict of torch_flows.py's Glow, RealNVP or Flow2D "
        f"(keys start {sorted(keys)[:3]})"
    )


# ---- torch -> flowgrad ----


def _glow_spec(sd, shape):
    levels = _count(sd, r"levels\.(\d+)\.")
    steps = _count(sd, r"levels\.0\.(\d+)\.")
    hidden = sd["levels.0.0.coupling.nn.0.weight"].shape[0]
    return (
        f"# Glow imported from PyTorch by flowgrad.convert: torch_flows.py's layers, its LU 1x1\n"
        f"# convolutions as flowgrad's plain conv1x1 (W = P L U)\n"
        f"data {_DATA['glow']}\nprior normal\nflow\n  affine shift=-0.5\n"
        f"  levels {levels}\n    squeeze\n"
        f"    repeat {steps}\n      actnorm\n      conv1x1\n"
        f"      affine_coupling mask=channel, parity=0, net=glow, hidden={hidden}, scale=sigmoid\n"
        f"    end\n    split\n  end\nend\ntrain\n{_TRAIN['glow']}end\n"
    ), tuple(shape)


def _realnvp_spec(sd, alpha):
    scales = _count(sd, r"scales\.(\d+)\.")
    hidden = sd["scales.0.0.0.st.inp.weight"].shape[0]
    blocks = _count(sd, r"scales\.0\.0\.0\.st\.blocks\.(\d+)\.")
    mask = sd["scales.0.0.0.mask"]
    shape = (sd["scales.0.0.0.st.inp.weight"].shape[1] - 1, mask.shape[2], mask.shape[3])

    def couplings(n, mask_kind, width):
        return "".join(
            f"  affine_coupling mask={mask_kind}, parity={i % 2}, net=resnet, hidden={width}, "
            f"blocks={blocks}, scale=exp_tanh\n"
            for i in range(n)
        )

    body = "".join(
        couplings(3, "checkerboard", hidden)
        + "  squeeze\n"
        + couplings(3, "channel", 2 * hidden)
        + "  split\n"
        for _ in range(scales - 1)
    ) + couplings(4, "checkerboard", hidden)
    return (
        f"# RealNVP imported from PyTorch by flowgrad.convert: torch_flows.py's layers\n"
        f"data {_DATA['realnvp']}\nprior normal\nflow\n  logit alpha={alpha!r}\n{body}end\n"
        f"train\n{_TRAIN['realnvp']}end\n"
    ), shape


def _moons_spec(sd):
    n = _count(sd, r"layers\.(\d+)\.")
    hidden = sd["layers.0.net.0.weight"].shape[0]
    additive = "log_scale" in sd
    if additive:
        layer = f"additive_coupling mask=half, parity={{i%2}}, net=mlp, hidden={hidden}, blocks=2"
    else:
        layer = (
            f"affine_coupling mask=half, parity={{i%2}}, net=mlp, hidden={hidden}, blocks=2, "
            "scale=exp_tanh"
        )
    return (
        f"# two-moons {'NICE' if additive else 'RealNVP'} imported from PyTorch "
        "by flowgrad.convert\n"
        f"data {_DATA['moons']}\nprior normal\nflow\n  repeat {n}\n    {layer}\n  end\n"
        f"{'  scale' + chr(10) if additive else ''}end\ntrain\n{_TRAIN['moons']}end\n"
    ), (2,)


def _swap_pairs(a):
    """Rows 2k and 2k+1 exchanged (the scale nets' (raw, shift) <-> (shift, raw) order)."""
    idx = np.arange(a.shape[0]).reshape(-1, 2)[:, ::-1].reshape(-1)
    return a[idx]


def _lu_weight(sd, t):
    """The reference's 1x1 convolution W = p (l*lmask + I) (u*lmask^T + diag(sign exp(log_s)))."""
    g = {
        k: sd[t + k].astype(np.float64) for k in ("p", "l", "u", "lmask", "eye", "sign_s", "log_s")
    }
    lower = g["l"] * g["lmask"] + g["eye"]
    upper = g["u"] * g["lmask"].T + np.diag(g["sign_s"] * np.exp(g["log_s"]))
    return g["p"] @ lower @ upper


class _Walk:
    """Where a flowgrad layer sits in the reference model, layer by layer: Glow's level and step,
    RealNVP's scale, group (0: checkerboard, 1: channel couplings) and index in the group."""

    def __init__(self):
        self.level = self.step = self.group = self.i = 0

    def glow(self):
        return f"levels.{self.level}.{self.step}."

    def realnvp(self):
        return f"scales.{self.level}.{self.group}.{self.i}."

    def after(self, typ):
        if typ == "affine_coupling":
            self.step, self.i = self.step + 1, self.i + 1
        elif typ == "squeeze":
            self.group, self.i = 1, 0
        elif typ == "split":
            self.level, self.step, self.group, self.i = self.level + 1, 0, 0, 0


def _layer_params(kind, sd, flow):
    """{flowgrad name: array} for a flow built from the spec _spec gave, walking its layers."""
    out, current, w = {}, flow.state_dict(), _Walk()
    for prefix, typ in flow.layers:
        p = prefix + "."
        if kind == "glow":
            t = w.glow()
            if typ == "actnorm":
                out[p + "bias"] = sd[t + "actnorm.bias"].reshape(-1)
                out[p + "logs"] = sd[t + "actnorm.logs"].reshape(-1)
            elif typ == "conv1x1":
                out[p + "weight"] = _lu_weight(sd, t + "invconv.")
            elif typ == "affine_coupling":
                for fg, tn in (("conv1", "0"), ("conv2", "2"), ("out", "4")):
                    out[p + f"net.{fg}.w"] = sd[t + f"coupling.nn.{tn}.weight"]
                    out[p + f"net.{fg}.b"] = sd[t + f"coupling.nn.{tn}.bias"]
            elif typ == "split":
                out[p + "prior.weight"] = sd[f"priors.{w.level}.weight"]
                out[p + "prior.bias"] = sd[f"priors.{w.level}.bias"]
        elif kind == "realnvp" and typ == "affine_coupling":
            out.update(_resnet_params(sd, w.realnvp(), p))
        elif kind == "moons" and typ == "scale":
            out[p + "log_scale"] = sd["log_scale"]
        elif kind == "moons":
            t = f"layers.{prefix.split('.')[0]}.net."
            for fg, tn in (("hidden0", "0"), ("hidden1", "2"), ("out", "4")):
                wt, b = sd[t + tn + ".weight"].T, sd[t + tn + ".bias"]
                if fg == "out" and typ == "affine_coupling":
                    wt, b = wt[:, ::-1], b[::-1]
                out[p + f"net.{fg}.w"], out[p + f"net.{fg}.b"] = wt, b
        w.after(typ)
    # what only flowgrad has starts as the reference's fixed value: gains exp(3·0) = 1, zero
    # (N(0, I)) priors, c = 1
    for name, value in current.items():
        if name not in out:
            out[name] = np.ones_like(value) if name.endswith(".rescale") else np.zeros_like(value)
    return out


def _resnet_params(sd, t, p):
    out = {p + "rescale": sd[t + "scale"].reshape(-1)}
    out[p + "net.in.w"], out[p + "net.in.b"] = sd[t + "st.inp.weight"], sd[t + "st.inp.bias"]
    for b in range(_count(sd, re.escape(t) + r"st\.blocks\.(\d+)\.")):
        for conv, tn in (("conv1", "1"), ("conv2", "3")):
            out[p + f"net.block{b}.{conv}.w"] = sd[t + f"st.blocks.{b}.{tn}.weight"]
            out[p + f"net.block{b}.{conv}.b"] = sd[t + f"st.blocks.{b}.{tn}.bias"]
    out[p + "net.out.w"] = _swap_pairs(sd[t + "st.out.weight"])
    out[p + "net.out.b"] = _swap_pairs(sd[t + "st.out.bias"])
    return out


def from_torch_state_dict(state_dict, kind=None, *, shape=None, alpha=0.05, dtype="float32"):
    """A flowgrad Flow with the weights of a reference model's state dict (torch tensors or
    NumPy arrays).  kind: "glow", "realnvp" or "moons" (None: from the names).  shape: the
    image shape (C, H, W), needed for Glow (RealNVP's masks and moons say theirs); alpha:
    RealNVP's logit alpha (not in its state dict)."""
    sd = {k: _numpy(v) for k, v in state_dict.items()}
    kind = kind or kind_of(sd)
    if kind == "glow":
        if shape is None:
            raise ValueError("a Glow state dict does not say its image shape: pass shape=(C, H, W)")
        spec, event = _glow_spec(sd, shape)
    elif kind == "realnvp":
        spec, event = _realnvp_spec(sd, float(alpha))
    elif kind == "moons":
        spec, event = _moons_spec(sd)
    else:
        raise ValueError(f"kind must be 'glow', 'realnvp' or 'moons', got {kind!r}")
    if kind == "glow" and not all(int(v) for k, v in sd.items() if k.endswith("actnorm.inited")):
        raise ValueError(
            "the model's actnorm layers are not initialised yet: run it on a batch first"
        )
    flow = flowgrad.Flow._from_text(
        spec, f"<{kind} from torch>", event, dtype=dtype, discrete=kind != "moons"
    )
    flow.load_state_dict(_layer_params(kind, sd, flow))
    return flow


def _model_dtype(model):
    return "float64" if str(next(model.parameters()).dtype) == "torch.float64" else "float32"


def from_torch(model, *, check=True):
    """A flowgrad Flow equal to the reference model (torch_flows.Glow, RealNVP or Flow2D):
    same log p(x) on the same batch, up to float rounding.  check: verify that on a batch."""
    sd = model.state_dict()
    kind = kind_of(sd)
    flow = from_torch_state_dict(
        sd,
        kind,
        shape=getattr(model, "shape", None),
        alpha=getattr(model, "alpha", 0.05),
        dtype=_model_dtype(model),
    )
    if check:
        _check(flow, model, kind)
    return flow


# ---- flowgrad -> torch ----


def _lu(w):
    """W = P L U with partial pivoting (L unit lower, U upper), in float64."""
    a = np.array(w, dtype=np.float64)
    n = a.shape[0]
    perm = np.arange(n)
    for k in range(n):
        piv = k + int(np.argmax(np.abs(a[k:, k])))
        if a[piv, k] == 0:
            raise ValueError("a 1x1 convolution's weight is singular")
        a[[k, piv]], perm[[k, piv]] = a[[piv, k]], perm[[piv, k]]
        a[k + 1 :, k] /= a[k, k]
        a[k + 1 :, k + 1 :] -= np.outer(a[k + 1 :, k], a[k, k + 1 :])
    p = np.zeros((n, n))
    p[perm, np.arange(n)] = 1.0
    return p, np.tril(a, -1), np.triu(a)


def _conv_weight(flow, index, channels):
    """flowgrad's 1x1 convolution W of layer `index`, from its output on unit images (float64)."""
    eye = np.eye(channels).reshape(channels, channels, 1, 1)
    y, _ = flow.run_layer(index, eye)
    return y[:, :, 0, 0].T


def _gain(logs):
    return np.exp(3.0 * logs.astype(np.float64))


def _must_be(value, target, what):
    if not np.array_equal(value, np.full_like(value, target)):
        raise ValueError(
            f"{what} is learned in flowgrad and fixed in the reference; this flow's is "
            f"not {target} (max |difference| {np.abs(value - target).max():.3g})"
        )


def _expected_layers(kind, flow):
    types = [t for _, t in flow.layers]
    if kind == "glow":
        levels = types.count("squeeze")
        steps = types.count("actnorm") // max(levels, 1)
        conv = "conv1x1_lu" if "conv1x1_lu" in types else "conv1x1"
        step = ["actnorm", conv, "affine_coupling"]
        want = ["affine"] + sum(
            (
                ["squeeze"] + step * steps + (["split"] if lv < levels - 1 else [])
                for lv in range(levels)
            ),
            [],
        )
    elif kind == "realnvp":
        scales = types.count("split") + 1
        want = (
            ["logit"] + ["affine_coupling"] * 3 + ["squeeze"] + ["affine_coupling"] * 3 + ["split"]
        )
        want = want[:1] + want[1:] * (scales - 1) + ["affine_coupling"] * 4
    else:
        n = types.count("affine_coupling") + types.count("additive_coupling")
        want = [types[0]] * n + (["scale"] if "scale" in types else [])
    if types != want:
        raise ValueError(
            f"this flow is not the reference's {kind}: its layers are {types}, expected {want}"
        )
    return types


def kind_of_flow(flow):
    """ "glow", "realnvp" or "moons": which reference model a flowgrad flow's layers follow."""
    types = [t for _, t in flow.layers]
    if types and types[0] == "affine" and "squeeze" in types:
        return "glow"
    if types and types[0] == "logit":
        return "realnvp"
    if types and flow.event == (2,):
        return "moons"
    raise ValueError(f"no reference model has the layers {types}")


def torch_state_dict(flow, kind=None):
    """The reference model's state dict ({name: NumPy array}, buffers included) for a flowgrad
    flow built as the reference (flows/models.h, examples/*-fmnist.flow, moons.flow, or
    from_torch).  ValueError when the flow holds what the reference cannot (a non-zero learned
    prior, c != 1 in the moons couplings) or its layers are not the reference's."""
    kind = kind or kind_of_flow(flow)
    _expected_layers(kind, flow)
    fg = flow.state_dict()
    if flow.prior == "learned":
        _must_be(fg["prior.mean"], 0, "the top prior's mean")
        _must_be(fg["prior.logstd"], 0, "the top prior's log-std")
    build = {"glow": _glow_torch, "realnvp": _realnvp_torch, "moons": _moons_torch}[kind]
    dtype = flow.dtype
    return {
        k: np.asarray(v, dtype=v.dtype if v.dtype == np.uint8 else dtype)
        for k, v in build(flow, fg).items()
    }


def _glow_torch(flow, fg):
    out, w = {}, _Walk()
    for index, (prefix, typ) in enumerate(flow.layers):
        p, t = prefix + ".", w.glow()
        if typ == "actnorm":
            c = fg[p + "bias"].shape[0]
            out[t + "actnorm.bias"] = fg[p + "bias"].reshape(1, c, 1, 1)
            out[t + "actnorm.logs"] = fg[p + "logs"].reshape(1, c, 1, 1)
            out[t + "actnorm.inited"] = np.array(1, np.uint8)
        elif typ in ("conv1x1", "conv1x1_lu"):
            c = fg[p + ("weight" if typ == "conv1x1" else "log_s_offset")].shape[0]
            perm, lower, upper = _lu(_conv_weight(flow, index, c))
            s = np.diag(upper)
            out.update(
                {
                    t + "invconv." + k: v
                    for k, v in (
                        ("p", perm),
                        ("sign_s", np.sign(s)),
                        ("lmask", np.tril(np.ones((c, c)), -1)),
                        ("eye", np.eye(c)),
                        ("l", lower),
                        ("u", np.triu(upper, 1)),
                        ("log_s", np.log(np.abs(s))),
                    )
                }
            )
        elif typ == "affine_coupling":
            gain = _gain(fg[p + "net.out.logs"])
            for f, tn in (("conv1", "0"), ("conv2", "2"), ("out", "4")):
                wt, b = fg[p + f"net.{f}.w"], fg[p + f"net.{f}.b"]
                if f == "out":
                    wt, b = wt * gain[:, None, None, None], b * gain
                out[t + f"coupling.nn.{tn}.weight"], out[t + f"coupling.nn.{tn}.bias"] = wt, b
        elif typ == "split":
            gain = _gain(fg[p + "prior.logs"])
            out[f"priors.{w.level}.weight"] = fg[p + "prior.weight"] * gain[:, None, None, None]
            out[f"priors.{w.level}.bias"] = fg[p + "prior.bias"] * gain
        w.after(typ)
    return out


def _realnvp_torch(flow, fg):
    out, w = {}, _Walk()
    h, wd = flow.event[1:]
    for prefix, typ in flow.layers:
        p, t = prefix + ".", w.realnvp()
        if typ == "affine_coupling":
            out.update(_resnet_torch(fg, p, t))
            if w.group == 0:  # checkerboard: the reference keeps its mask as a buffer
                board = np.add.outer(np.arange(h), np.arange(wd)) % 2 == w.i % 2
                out[t + "mask"] = board.astype(np.float64).reshape(1, 1, h, wd)
        elif typ == "squeeze":
            h, wd = h // 2, wd // 2
        elif typ == "split":
            _must_be(fg[p + "prior.weight"], 0, "the factored-out half's prior (its weight)")
            _must_be(fg[p + "prior.bias"], 0, "the factored-out half's prior (its bias)")
        w.after(typ)
    return out


def _resnet_torch(fg, p, t):
    out = {t + "scale": fg[p + "rescale"].reshape(1, -1, 1, 1)}
    out[t + "st.inp.weight"], out[t + "st.inp.bias"] = fg[p + "net.in.w"], fg[p + "net.in.b"]
    b = 0
    while p + f"net.block{b}.conv1.w" in fg:
        for conv, tn in (("conv1", "1"), ("conv2", "3")):
            out[t + f"st.blocks.{b}.{tn}.weight"] = fg[p + f"net.block{b}.{conv}.w"]
            out[t + f"st.blocks.{b}.{tn}.bias"] = fg[p + f"net.block{b}.{conv}.b"]
        b += 1
    out[t + "st.out.weight"] = _swap_pairs(fg[p + "net.out.w"])
    out[t + "st.out.bias"] = _swap_pairs(fg[p + "net.out.b"])
    return out


def _moons_torch(flow, fg):
    out = {}
    for prefix, typ in flow.layers:
        p = prefix + "."
        if typ == "scale":
            out["log_scale"] = fg[p + "log_scale"]
            continue
        if typ == "affine_coupling":
            _must_be(fg[p + "rescale"], 1, f"{prefix}'s c of c·tanh")
        t = f"layers.{prefix.split('.')[0]}.net."
        for f, tn in (("hidden0", "0"), ("hidden1", "2"), ("out", "4")):
            w, b = fg[p + f"net.{f}.w"], fg[p + f"net.{f}.b"]
            if f == "out" and typ == "affine_coupling":
                w, b = w[:, ::-1], b[::-1]
            out[t + tn + ".weight"], out[t + tn + ".bias"] = np.ascontiguousarray(w.T), b
    return out


def to_torch(flow, model, *, check=True):
    """Copies a flowgrad flow's weights into a reference model of the same architecture
    (torch_flows.Glow, RealNVP or Flow2D, e.g. built with the same K, L, hidden) and returns
    it; afterwards both give the same log p(x).  check: verify that on a batch."""
    import torch

    kind = kind_of(model.state_dict())
    sd = torch_state_dict(flow, kind)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()})
    if check:
        _check(flow, model, kind)
    return model


def _check(flow, model, kind, tol=1e-3):
    """log p of a small batch on both sides, relative difference at most tol (a loose bound:
    this catches structural differences; the tests measure the float32 agreement)."""
    import torch

    rng = np.random.default_rng(0)
    if kind == "moons":
        x = 1.5 * rng.standard_normal((4, 2))
    else:
        x = rng.uniform(0.05, 0.95, (2,) + tuple(flow.event))
    x = x.astype(flow.dtype)
    with torch.no_grad():
        reference = copy.deepcopy(model).log_prob(torch.from_numpy(x)).double().numpy()
    ours = flow.log_prob(x).astype(np.float64)
    err = np.abs(ours - reference).max() / max(1.0, np.abs(reference).max())
    if not err <= tol:
        raise ValueError(
            f"the converted {kind} does not match: log p differs by {err:.3g} (relative) "
            "on a test batch"
        )
