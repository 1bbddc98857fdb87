"""flowgrad from Python: normalizing flows on flowgrad's C engine, NumPy arrays in and out.

    import numpy as np
    import flowgrad

    result = flowgrad.train("examples/moons.flow", steps=2000)      # the spec's own data
    flow = result.flow
    print(result.test_loss, result.unit)                            # test NLL in nats
    logp = flow.log_prob(np.array([[0.0, 0.5]], np.float32))        # log p(x) per sample
    x = flow.sample(1000, temperature=0.8, seed=1)                  # [1000, 2] float32
    flow.save("moons.safetensors")                                  # `flowgrad eval` reads it
    again = flowgrad.load("moons.safetensors")

Arrays go in without copies when they are C-contiguous and of the flow's dtype (float32 by
default); anything else array-like is converted first.  Errors from flowgrad raise
`flowgrad.Error` (a RuntimeError with `.status`, e.g. "FG_E_FORMAT", and `.message`); bad
arguments raise TypeError or ValueError, missing files FileNotFoundError.

`flowgrad.convert` moves weights between flowgrad and the PyTorch reference models
(Glow, RealNVP, two-moons RealNVP / NICE of ../shared/peers/torch_flows.py).
"""
import collections
import math
import numbers
import os
import secrets
import tempfile

import numpy as np

from . import _flowgrad

__all__ = [
    "Error",
    "Flow",
    "load",
    "train",
    "registry",
    "load_plugin",
    "check",
    "load_data",
    "BijectorType",
    "Arg",
    "CheckReport",
    "Data",
    "TrainStep",
    "TrainResult",
    "convert",
]

Error = _flowgrad.Error

Arg = collections.namedtuple("Arg", "name kind default doc")
Arg.__doc__ = (
    "A constructor argument of a bijector type: kind is int, double, bool, string or ints; "
    "default None means required."
)
BijectorType = collections.namedtuple("BijectorType", "name doc args plugin")
BijectorType.__doc__ = (
    "A registered bijector type: its arguments (Arg) and the plugin it came from (None: built in)."
)
CheckReport = collections.namedtuple(
    "CheckReport", "passed roundtrip_err logdet_err inverse_logdet_err edges_finite message"
)
CheckReport.__doc__ = (
    "flowgrad.check's result: the measured errors and one line per check in message."
)
Data = collections.namedtuple("Data", "train test discrete")
Data.__doc__ = (
    "A data source's arrays ([N, event...] float32; test may be None); discrete: 8-bit levels."
)
TrainStep = collections.namedtuple(
    "TrainStep", "step loss grad_norm lr skipped bad_layer seconds unit"
)
TrainStep.__doc__ = (
    "What the training callback receives after each step (loss in `unit`: bits/dim or nats)."
)
TrainResult = collections.namedtuple(
    "TrainResult", "flow steps step loss test_loss unit checkpoint stopped seconds"
)
TrainResult.__doc__ = (
    "flowgrad.train's result: the trained flow, steps taken in this call and in all "
    "(step), the last training loss, the test loss (None without test data), the unit, "
    "the checkpoint written (or None), why it stopped (steps, minutes, callback) and "
    "the seconds it took."
)

_REAL_KINDS = "fiu"


def _path(p, what):
    """os.fspath(p) for a str or path-like; TypeError otherwise."""
    if not isinstance(p, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), got {type(p).__name__}")
    return os.fspath(p)


def _existing(p, what):
    path = _path(p, what)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    return path


def _spec_source(spec):
    """(text, name) of a spec given as its text (several lines) or as a path."""
    if isinstance(spec, str) and "\n" in spec:
        return spec, "<spec>"
    path = _existing(spec, "spec")
    with open(path, encoding="utf-8") as f:
        return f.read(), path


def _real_array(x, what):
    a = np.asarray(x)
    if a.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{what} must hold real numbers, got dtype {a.dtype}")
    return a


def _count(n, what, lo=1):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(n).__name__}")
    if n < lo:
        raise ValueError(f"{what} must be >= {lo}, got {n}")
    return int(n)


def _seed(seed):
    if seed is None:
        return secrets.randbits(64)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in 0..2**64-1, got {seed}")
    return int(seed)


class Flow:
    """A normalizing flow: a chain of bijectors from data x to a latent z, a base distribution
    and the parameters.  Made by Flow.from_spec, flowgrad.load, flowgrad.train or
    flowgrad.convert.from_torch.

    Inputs are batches [B, *event]; log_prob, forward and bits_per_dim work per sample.  A flow
    evaluates in its dtype (float32 unless made with dtype="float64")."""

    __slots__ = ("_c", "_info")

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "make a Flow with Flow.from_spec(spec), flowgrad.load(checkpoint) or "
            "flowgrad.train(...)"
        )

    @classmethod
    def _wrap(cls, c):
        self = object.__new__(cls)
        self._c = c
        self._info = c.info  # fixed for the flow's life
        return self

    @classmethod
    def from_spec(cls, spec, event=None, *, seed=None, dtype="float32", discrete=None):
        """A new flow (freshly initialised weights) from a spec file's path or its text.

        event: the per-sample shape of x, e.g. (1, 28, 28) or (2,); None takes it from the
        spec's `data` source (which is opened for one sample).  seed: parameter initialisation
        (None: the spec's train seed).  discrete: whether the data are 8-bit levels (None: as
        the data source says, or True for 3-axis events)."""
        return cls._from_text(*_spec_source(spec), event, seed=seed, dtype=dtype, discrete=discrete)

    @classmethod
    def _from_text(cls, text, name, event=None, *, seed=None, dtype="float32", discrete=None):
        if event is not None:
            event = tuple(event)
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if seed is not None:
            seed = _seed(seed)
        if discrete is not None and not isinstance(discrete, (bool, np.bool_)):
            raise TypeError("discrete must be True, False or None")
        return cls._wrap(_flowgrad.flow_from_spec(text, name, event, seed, dtype, discrete))

    # ---- what it is ----
    @property
    def event(self):
        """Per-sample shape of x."""
        return self._c.event

    @property
    def latent_shape(self):
        """Per-sample shape of the top latent z (smaller than event when layers factor out)."""
        return self._c.latent_shapes[0]

    @property
    def latent_shapes(self):
        """Per-sample shapes of everything forward() returns: the top latent, then the parts
        factored out by split layers, in the order the forward pass removes them."""
        return self._c.latent_shapes

    @property
    def dtype(self):
        return np.dtype(self._info["dtype"])

    @property
    def spec(self):
        """The spec text the flow was built from (saved in its checkpoints)."""
        return self._info["spec"]

    @property
    def discrete(self):
        """True when the flow models 8-bit data (images): bits_per_dim applies."""
        return self._info["discrete"]

    @property
    def n_bits(self):
        return self._info["train"]["n_bits"]

    @property
    def prior(self):
        """ "normal" (N(0, I)) or "learned" (a diagonal Gaussian, parameters prior.mean/logstd)."""
        return self._info["prior"]

    @property
    def num_params(self):
        """Total number of scalar parameters."""
        return self._info["num_params"]

    @property
    def layers(self):
        """[(prefix, type)] of the top-level layers, e.g. ("3.conv1x1_lu", "conv1x1_lu"); the
        layer's parameters are named "<prefix>.<local name>" ("3.conv1x1_lu.log_s_offset")."""
        return self._c.layers

    @property
    def train_settings(self):
        """The spec's train block (batch, lr, steps, seed, ...) as a dict."""
        return dict(self._info["train"])

    def __repr__(self):
        return (
            f"<flowgrad.Flow {self._info['name']}: {len(self.layers)} layers, "
            f"{self.num_params:,} parameters, event {self.event}, {self.dtype}>"
        )

    # ---- evaluation ----
    @staticmethod
    def _check_shape(a, what, per_sample):
        want = tuple(per_sample)
        if a.shape[1:] != want or a.ndim != len(want) + 1:
            hint = f" (one sample? add a batch axis: {what}[None])" if a.shape == want else ""
            raise ValueError(f"{what} has shape {a.shape}; expected (batch, *{want}){hint}")

    def _batch(self, x, what, per_sample):
        a = _real_array(x, what)
        self._check_shape(a, what, per_sample)
        return np.ascontiguousarray(a, dtype=self.dtype)

    def log_prob(self, x):
        """log p(x) per sample, [B], in nats.  x: [B, *event] (image flows take dequantised
        values in [0, 1); see bits_per_dim for 8-bit images).  Non-finite inputs give NaN."""
        a = self._batch(x, "x", self.event)
        if a.shape[0] == 0:
            return np.empty(0, self.dtype)
        return self._c.log_prob(a)

    def forward(self, x):
        """(z, logdet): z = f(x) and the sum of the layers' log-dets per sample ([B]), so that
        log_prob(x) = log N(z) + logdet (factor-out layers add the log-density of what they
        remove).  z is an array [B, *latent_shape], or, when layers factor parts out, a list
        [z_top, z_1, ..., z_k] with the shapes of latent_shapes; inverse() takes either back."""
        a = self._batch(x, "x", self.event)
        if a.shape[0] == 0:
            parts = [np.empty((0,) + tuple(s), self.dtype) for s in self.latent_shapes]
            return (parts if len(parts) > 1 else parts[0]), np.empty(0, self.dtype)
        z, logdet, latents = self._c.forward(a)
        return ([z] + latents if latents else z), logdet

    def inverse(self, z):
        """(x, logdet): x = f⁻¹(z) and log|det dx/dz| per sample.  z as forward() returns it:
        an array, or [z_top, z_1, ..., z_k] for flows with factor-out layers."""
        parts = list(z) if isinstance(z, (list, tuple)) else [z]
        shapes = self.latent_shapes
        if len(parts) != len(shapes):
            raise ValueError(
                f"this flow's latent has {len(shapes)} part(s) {shapes}; got {len(parts)}"
            )
        arrays = [
            self._batch(p, f"z[{i}]" if len(shapes) > 1 else "z", s)
            for i, (p, s) in enumerate(zip(parts, shapes))
        ]
        if len({a.shape[0] for a in arrays}) != 1:
            raise ValueError(
                f"the parts of z have different batch sizes: {[a.shape[0] for a in arrays]}"
            )
        if arrays[0].shape[0] == 0:
            return np.empty((0,) + tuple(self.event), self.dtype), np.empty(0, self.dtype)
        return self._c.inverse(arrays[0], arrays[1:])

    def sample(self, n, temperature=1.0, seed=None):
        """n samples [n, *event]: latents drawn at `temperature` (the prior's std multiplied by
        it; 0 gives the mode) and mapped through the inverse.  The same seed gives the same
        samples; None draws a fresh one.  An under-trained flow may give non-finite samples."""
        n = _count(n, "n")
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
        if not (math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
        return self._c.sample(n, float(temperature), _seed(seed))

    def bits_per_dim(self, x8, seed=0):
        """Bits per dimension of 8-bit images, per sample ([B], float64): x8 is uint8
        [B, *event]; its levels (reduced to the flow's n_bits) are dequantised with uniform
        noise u drawn from `seed`, y = (x + u) / 2**n_bits, and
            bpd = (-log p(y) + D ln 2**n_bits) / (D ln 2),  D = elements per sample."""
        a = np.asarray(x8)
        if a.dtype != np.uint8:
            raise TypeError(
                f"bits_per_dim takes uint8 images, got dtype {a.dtype} (log_prob takes real values)"
            )
        self._check_shape(a, "x8", self.event)
        if a.shape[0] == 0:
            return np.empty(0)
        bins = 2**self.n_bits
        levels = a >> (8 - self.n_bits)
        u = np.random.default_rng(_seed(seed)).random(a.shape)
        logp = self.log_prob((levels + u) / bins).astype(np.float64)
        dims = int(np.prod(self.event))
        return (-logp + dims * math.log(bins)) / (dims * math.log(2.0))

    def run_layer(self, index, x, inverse=False):
        """(y, logdet) of top-level layer `index` alone on x (float32, or float64 to run it in
        float64); factor-out layers cannot run inverted alone."""
        index = _count(index, "index", lo=0)
        a = _real_array(x, "x")
        a = np.ascontiguousarray(a, dtype=np.float64 if a.dtype == np.float64 else np.float32)
        return self._c.run_layer(index, a, bool(inverse))

    def data_init(self, x):
        """Data-dependent initialisation (actnorm's) on the batch x [B, *event]: each layer that
        asks for one is set so that x comes out with zero mean and unit variance there.  train()
        does this on its first batch; call it before evaluating a flow built from a spec."""
        a = self._batch(x, "x", self.event)
        if a.shape[0] == 0:
            raise ValueError("data_init needs at least one sample")
        self._c.data_init(a)

    # ---- parameters and files ----
    def state_dict(self):
        """{name: array} of every parameter (copies), named as in checkpoints: "3.actnorm.logs",
        "prior.mean", ... (a checkpoint stores them as "param/<name>")."""
        return self._c.state_dict()

    def load_state_dict(self, state, strict=True):
        """Copies the arrays of `state` (a mapping name -> array-like; "param/<name>" keys are
        accepted too) into the parameters.  strict: every parameter must be given.  Everything
        is checked (names, shapes, finite values) before anything changes."""
        if not isinstance(state, collections.abc.Mapping):
            raise TypeError(f"state must be a mapping name -> array, got {type(state).__name__}")
        current = self._c.state_dict()
        items = []
        for key, value in state.items():
            if not isinstance(key, str):
                raise TypeError(f"parameter names are str, got {type(key).__name__}")
            name = key[6:] if key.startswith("param/") else key
            if name not in current:
                raise KeyError(f"the flow has no parameter {name!r}")
            a = _real_array(value, name)
            if a.shape != current[name].shape:
                raise ValueError(
                    f"parameter {name!r} has shape {current[name].shape}, got {a.shape}"
                )
            items.append((name, np.ascontiguousarray(a, dtype=self.dtype)))
        missing = set(current) - {n for n, _ in items}
        if strict and missing:
            raise KeyError(f"strict: {len(missing)} parameters missing, e.g. {sorted(missing)[:3]}")
        if len({n for n, _ in items}) != len(items):
            raise ValueError("a parameter is given twice (with and without 'param/')")
        self._c.load_state_dict(items, False)

    def save(self, path):
        """Writes a flowgrad checkpoint (safetensors: the weights, the spec, zero optimiser state)
        that flowgrad.load, `flowgrad eval|sample` and `flowgrad train --resume` read.
        Returns the path."""
        path = _path(path, "path")
        self._c.save(path)
        return path

    def dump(self, path, what="logprob", batch=1, compiled=False):
        """Draws the log-prob graph ("logprob"), the training graph with every gradient
        ("train") or the sampling graph ("sample") for a batch of `batch`; the extension picks
        the format (.dot/.gv, .svg, .png).  compiled: the graph after the compiler's passes,
        fused groups as clusters.  Returns the number of nodes drawn."""
        return self._c.dump(_path(path, "path"), what, _count(batch, "batch"), bool(compiled))


def load(checkpoint):
    """The flow of a flowgrad checkpoint (from `flowgrad train`, flowgrad.train or Flow.save),
    rebuilt from the spec it holds, with its weights (its EMA weights when it has them)."""
    return Flow._wrap(_flowgrad.flow_load(_existing(checkpoint, "checkpoint")))


def registry():
    """Every registered bijector type (built-ins and loaded plugins) with its arguments."""
    return [
        BijectorType(name, doc, [Arg(*a) for a in args], plugin)
        for name, doc, args, plugin in _flowgrad.registry()
    ]


def load_plugin(path):
    """Loads a bijector plugin (a shared library exporting fg_plugin_init); its types become
    usable in specs and check().  Returns the names of the types it added."""
    return _flowgrad.load_plugin(_existing(path, "plugin"))


def check(
    type_name, args=None, event=None, *, batch=3, tol=1e-6, perturb=0.1, gradcheck=True, seed=0
):
    """Verifies a bijector type in float64 (round trip, log-det against the autodiff Jacobian,
    inverse log-det, finite edges, gradcheck) on random inputs of per-sample shape `event`,
    constructed from `args` ("hidden=8, mask=checkerboard"); None for either takes the type's
    own check settings.  Returns a CheckReport; a failed check is passed=False, not an error."""
    if not isinstance(type_name, str):
        raise TypeError("type_name must be a str")
    if args is not None and not isinstance(args, str):
        raise TypeError("args must be a str like 'hidden=8, mask=half' or None")
    if event is not None:
        event = tuple(event)
    r = _flowgrad.check(
        type_name,
        args,
        event,
        _count(batch, "batch"),
        float(tol),
        float(perturb),
        not gradcheck,
        _seed(seed),
    )
    return CheckReport(*r)


def load_data(source, limit=0):
    """The arrays of a data source as a spec's `data` line names it: "fashion-mnist",
    "mnist:<dir>", "cifar10:<dir>", "npy:<train.npy>[,<test.npy>]", "moons n=20000 ...".
    limit > 0 keeps that many training samples."""
    if not isinstance(source, str):
        raise TypeError("source must be a str")
    return Data(*_flowgrad.open_data(source, _count(limit, "limit", lo=0)))


def _training_array(x, what, discrete):
    a = _real_array(x, what)
    if a.ndim < 2 or a.shape[0] < 1:
        raise ValueError(f"{what} must be [N, *event] with N >= 1, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} holds NaN or infinity")
    if discrete and ((a < 0).any() or (a > 255).any() or (a != np.floor(a)).any()):
        raise ValueError(f"{what}: discrete data must be integer levels 0..255")
    return a


def _split_data(data):
    if isinstance(data, collections.abc.Mapping):
        return data["train"], data.get("test")
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError("data as a sequence is (train, test)")
        return data[0], data[1]
    return data, None


def _checkpoint_path(out):
    path = _path(out, "out")
    if path.endswith(".safetensors"):
        return path
    os.makedirs(path, exist_ok=True)
    return os.path.join(path, "checkpoint.safetensors")


def train(
    spec,
    data=None,
    *,
    steps=None,
    minutes=None,
    out=None,
    resume=None,
    callback=None,
    discrete=None,
    limit=0,
    threads=0,
    checkpoint_every=500,
):
    """Trains a flow as `flowgrad train` does (Adam or the spec's optimiser, warm-up, clipping,
    EMA, dequantisation of 8-bit data, the non-finite-step guard) and returns a TrainResult.

    spec: a spec's path or text (a new flow), or a Flow to go on training in place.
    data: None for the spec's own `data` source, else NumPy arrays: train, (train, test) or
    {"train": ..., "test": ...}, each [N, *event].  uint8 arrays are 8-bit levels (dequantised,
    losses in bits/dim); float arrays are continuous (nats) unless discrete=True.
    steps / minutes: when to stop (None for both: the spec's, else 1000 steps).
    out: a directory (gets checkpoint.safetensors) or a .safetensors path, written every
    checkpoint_every steps and at the end; resume: a checkpoint to continue exactly from.
    callback(TrainStep) runs after every step; returning False stops training.  Ctrl-C stops
    after the current step (the checkpoint is saved) and raises KeyboardInterrupt."""
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")
    text, name = (spec.spec, "<flow>") if isinstance(spec, Flow) else _spec_source(spec)
    if data is None:
        source = _flowgrad.parse_spec(text, name)["data"]
        if source is None:
            raise ValueError(f"{name} has no 'data' line: pass data=")
        loaded = load_data(source, limit)
        data = (loaded.train, loaded.test)
        discrete = loaded.discrete if discrete is None else discrete
    train_x, test_x = _split_data(data)
    if discrete is None:
        discrete = (
            spec.discrete if isinstance(spec, Flow) else np.asarray(train_x).dtype == np.uint8
        )
    train_x = _training_array(train_x, "train data", discrete)
    test_x = None if test_x is None else _training_array(test_x, "test data", discrete)
    if isinstance(spec, Flow):
        flow = spec
    else:
        flow = Flow._from_text(text, name, event=train_x.shape[1:], discrete=bool(discrete))
    for what, a in (("train data", train_x), ("test data", test_x)):
        if a is not None and a.shape[1:] != tuple(flow.event):
            raise ValueError(
                f"{what} has samples of shape {a.shape[1:]}; the flow's event is {flow.event}"
            )
    train_x = np.ascontiguousarray(train_x, dtype=flow.dtype)
    test_x = None if test_x is None else np.ascontiguousarray(test_x, dtype=flow.dtype)
    if train_x.shape[0] < flow.train_settings["batch"]:
        raise ValueError(
            f"{train_x.shape[0]} training samples are fewer than one batch of "
            f"{flow.train_settings['batch']}"
        )
    if steps is None and minutes is None:
        steps, minutes = flow.train_settings["steps"], flow.train_settings["minutes"]
        if not steps and not minutes:
            steps = 1000
    steps = 0 if steps is None else _count(steps, "steps", lo=0)
    minutes = 0.0 if minutes is None else float(minutes)
    if not (math.isfinite(minutes) and minutes >= 0) or (steps == 0 and minutes == 0):
        raise ValueError("steps and minutes must be >= 0 and not both 0")
    unit = "bits/dim" if discrete else "nats"

    def step_callback(info):
        return callback(TrainStep(unit=unit, **info))

    args = (
        flow._c,
        train_x,
        test_x,
        bool(discrete),
        steps,
        minutes,
        None if out is None else _checkpoint_path(out),
        None,
        None if callback is None else step_callback,
        _count(threads, "threads", lo=0),
        _count(checkpoint_every, "checkpoint_every", lo=0),
    )
    if resume is not None:
        r = _flowgrad.train(*args[:7], _existing(resume, "resume checkpoint"), *args[8:])
    elif isinstance(spec, Flow):
        # go on from the flow's weights: through a checkpoint of them, so that the trainer
        # takes them as initialised (no data-dependent initialisation over them)
        with tempfile.TemporaryDirectory() as tmp:
            r = _flowgrad.train(
                *args[:7], spec.save(os.path.join(tmp, "start.safetensors")), *args[8:]
            )
    else:
        r = _flowgrad.train(*args)
    return TrainResult(flow=flow, **r)


from . import convert  # noqa: E402  (after Flow, which it uses)
