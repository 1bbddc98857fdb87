#!/usr/bin/python3
"""flowgrad against the PyTorch peer (../shared/peers/torch_flows.py), side by side.

For each configuration, runs build/tools/bench_flows and the peer's `bench` alternately in one
invocation (flowgrad, torch, flowgrad, torch, ... for --rounds rounds), each as its own process
so peak RSS is per process, at --threads threads, and prints one table per OPENBLAS_CORETYPE
setting: per phase the median over rounds of each side's items/s (each a median of its reps;
best round in parentheses), the ratio, peak RSS (after the phase, cumulative, as both report
it) and GFLOP/s, both sides computed from the peer's FLOP counts (conv/linear MACs x 2,
training = 3 x forward).

  /usr/bin/python3 tools/bench/bench_vs_torch.py [--setting haswell|native|both] [--rounds 2]
      [--configs glow-K8,glow-K16,realnvp,moons] [--reps-scale 1.0] [--raw results.jsonl]
      [--baseline OTHER_BUILD]

The header names the CPU, the load average and the OPENBLAS_CORETYPE of the calling
environment.  --baseline runs a second flowgrad build (e.g. main's, to measure a change) as a
third side in the same rounds and adds its items/s and the ratio of the two builds.

Settings: haswell = OPENBLAS_CORETYPE=Haswell for both sides; native = unset for both (OpenBLAS
detects the CPU) with tcmalloc preloaded for the peer, the peer's best setting.
Needs python3-torch, python3-numpy, libtcmalloc-minimal4 and dataset-fashion-mnist (apt-get),
and a release build: meson setup build -Dbuildtype=release && ninja -C build.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"

# name: (arguments both benches accept, warm-up, reps) -- reps sized so a round stays short
CONFIGS = {
    "glow-K8": (["--model", "glow", "--K", "8", "--L", "2", "--hidden", "128", "--batch", "64"], 2, 8),
    "glow-K16": (["--model", "glow", "--K", "16", "--L", "2", "--hidden", "256", "--batch", "64"], 1, 4),
    "realnvp": (["--model", "realnvp", "--L", "2", "--hidden", "64", "--blocks", "4", "--batch", "64"], 1, 2),
    "moons": (["--model", "moons", "--layers", "8", "--hidden", "256", "--batch", "512"], 3, 12),
}
PHASES = ("train", "logprob", "sample")


def env_for(setting, peer):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "LD_PRELOAD")}
    if setting == "haswell":
        env["OPENBLAS_CORETYPE"] = "Haswell"
    elif peer and os.path.exists(TCMALLOC):
        env["LD_PRELOAD"] = TCMALLOC
    return env


def run(cmd, env):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return json.loads(lines[-1])


def cpu_model():
    """'AMD EPYC (family 26 model 2)': /proc/cpuinfo's model name, family and model."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                info.setdefault(k.strip(), v.strip())
    except OSError:
        return "unknown CPU"
    return f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"


def header(args):
    with open("/proc/loadavg") as f:
        load = f.read().strip()
    print(f"# CPU: {cpu_model()}, {os.cpu_count()} online; /proc/loadavg at start: {load}; "
          f"OPENBLAS_CORETYPE in the calling environment: {os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"# flowgrad: {args.build}" + (f"; baseline: {args.baseline}" if args.baseline else ""))


def flops_per_item(peer, phase):
    f = peer["flops"]
    return {"train": 3 * f["forward_per_item"], "logprob": f["forward_per_item"],
            "sample": f["sample_per_item"]}[phase]


def fmt_rate(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def table(setting, results, args):
    print(f"\n## setting {setting}: OPENBLAS_CORETYPE="
          f"{'Haswell (both)' if setting == 'haswell' else 'unset (both), peer with tcmalloc'}; "
          f"{args.threads} threads; {args.rounds} rounds alternating; medians over rounds (best)")
    base = args.baseline is not None
    hdr = (f"{'config':<9} {'phase':<8} {'flowgrad items/s':>20} {'torch items/s':>20} {'fg/torch':>8} "
           f"{'RSS fg':>7} {'RSS torch':>9} {'RSS fg/t':>8} {'GF/s fg':>8} {'GF/s torch':>10}"
           + (f" {'baseline items/s':>20} {'fg/base':>7}" if base else ""))
    print(hdr)
    print("-" * len(hdr))
    notes = []
    for name, runs in results.items():
        fg, pt = runs["flowgrad"], runs["torch"]
        for ph in PHASES:
            a = [r[ph]["items_per_s"] for r in fg if ph in r]
            b = [r[ph]["items_per_s"] for r in pt if ph in r]
            if not a or not b:
                continue
            ra = statistics.median(r[ph]["peak_rss_mib"] for r in fg)
            rb = statistics.median(r[ph]["peak_rss_mib"] for r in pt)
            ma, mb, fpi = statistics.median(a), statistics.median(b), flops_per_item(pt[0], ph)
            print(f"{name:<9} {ph:<8} {fmt_rate(ma) + ' (' + fmt_rate(max(a)) + ')':>20} "
                  f"{fmt_rate(mb) + ' (' + fmt_rate(max(b)) + ')':>20} {ma / mb:>8.2f} {ra:>7.0f} {rb:>9.0f} "
                  f"{ra / rb:>8.2f} {ma * fpi / 1e9:>8.1f} {mb * fpi / 1e9:>10.1f}", end="")
            c = [r[ph]["items_per_s"] for r in runs.get("baseline", []) if ph in r]
            if base and c:
                mc = statistics.median(c)
                print(f" {fmt_rate(mc) + ' (' + fmt_rate(max(c)) + ')':>20} {ma / mc:>7.2f}", end="")
            print()
        pf, pp = fg[0]["params"], pt[0]["params"]
        cf, cp = fg[0]["flops"]["counted_forward_per_item"], pt[0]["flops"]["forward_per_item"]
        cs, cps = fg[0]["flops"]["counted_sample_per_item"], pt[0]["flops"]["sample_per_item"]
        notes.append(f"{name}: flowgrad kernels: {fg[0].get('kernels', '?')} (FG_KERNELS={fg[0].get('fg_kernels', '?')})")
        notes.append(f"{name}: params flowgrad {pf:,} torch {pp:,} (diff {pf - pp:+,}); FLOPs/item forward "
                     f"flowgrad {cf / 1e6:,.1f}M torch {cp / 1e6:,.1f}M, sampling flowgrad {cs / 1e6:,.1f}M "
                     f"torch {cps / 1e6:,.1f}M; times (s/rep, medians) train fg "
                     f"{statistics.median(r['train']['median_s'] for r in fg):.4f} torch "
                     f"{statistics.median(r['train']['median_s'] for r in pt):.4f}; 1-min load average at the "
                     f"runs' starts {min(r['loadavg_1m'] for r in fg + pt):.1f}-{max(r['loadavg_1m'] for r in fg + pt):.1f}")
    print("RSS in MiB (peak after the phase, cumulative, per process).")
    for n in notes:
        print(n)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", choices=["haswell", "native", "both"], default="native")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--reps-scale", type=float, default=1.0, help="multiply every config's warm-up and reps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--peer", default=os.path.join(ROOT, "..", "shared", "peers", "torch_flows.py"))
    p.add_argument("--raw", default=None, help="append every run's JSON line here")
    p.add_argument("--baseline", default=None, help="another flowgrad build to run as a third side")
    args = p.parse_args()
    fg_exe = os.path.join(args.build, "tools", "bench_flows")
    if not os.access(fg_exe, os.X_OK):
        sys.exit(f"{fg_exe} not found: meson setup build -Dbuildtype=release && ninja -C build")
    if not os.path.exists(TCMALLOC):
        print(f"warning: {TCMALLOC} missing (apt-get install libtcmalloc-minimal4): native runs the peer "
              "without tcmalloc", file=sys.stderr)
    if args.baseline and not os.access(os.path.join(args.baseline, "tools", "bench_flows"), os.X_OK):
        sys.exit(f"{args.baseline}/tools/bench_flows not found")
    header(args)
    settings = ["haswell", "native"] if args.setting == "both" else [args.setting]
    t0 = time.time()
    for setting in settings:
        results = {}
        for name in args.configs.split(","):
            cfg, warmup, reps = CONFIGS[name]
            common = cfg + ["--threads", str(args.threads), "--warmup", str(max(1, round(warmup * args.reps_scale))),
                            "--reps", str(max(1, round(reps * args.reps_scale)))]
            cmds = {"flowgrad": [fg_exe] + common, "torch": ["/usr/bin/python3", args.peer, "bench"] + common}
            if args.baseline:
                cmds["baseline"] = [os.path.join(args.baseline, "tools", "bench_flows")] + common
            runs = results[name] = {side: [] for side in cmds}
            for rnd in range(args.rounds):
                for side in cmds:
                    load = os.getloadavg()[0]  # the machine is shared: show how busy it was
                    r = run(cmds[side], env_for(setting, side == "torch"))
                    r.update(side=side, setting=setting, round=rnd, loadavg_1m=load)
                    runs[side].append(r)
                    if args.raw:
                        with open(args.raw, "a") as f:
                            f.write(json.dumps(r) + "\n")
                    print(f"[{time.time() - t0:6.0f}s] {setting} {name} round {rnd + 1} {side}: "
                          f"train {r.get('train', {}).get('items_per_s', 0):.1f} items/s", file=sys.stderr)
        table(setting, results, args)


if __name__ == "__main__":
    main()
