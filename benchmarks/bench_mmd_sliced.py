r"""Sliced MMD (Riesz kernel) by sorting vs the exact O(N^2) method: time, memory, accuracy.

Run ``python benchmarks/bench_mmd_sliced.py [--quick] [--device cpu|cuda] [--threads T]``;
``--ratio-rounds R`` measures only the :math:`N = 10^4` ratio of section 1, round by round
(the exact call, then the sliced sequence), and prints the spread of the per-round ratio
with the ratio of the best times.

Tables (value + gradient with respect to ``x``, ``d = 64``, ``P = 100`` projections, N = M):

1. Scaling in N: sliced (:func:`deepinv_pnn.sampling.sliced_mmd_riesz`) vs the exact
   method with ``torch.cdist`` (chunked, closed-form gradient:
   :func:`deepinv_pnn.sampling.mmd_riesz`), and geomloss's tensorized ``energy``
   ``SamplesLoss`` with autograd when geomloss is installed (geomloss's loss is half of
   MMD^2) and its ``online`` backend, KeOps, when pykeops is installed (its kernel compiled
   by an untimed call at N = 100). Up to N = 10^4, after one untimed call each, 5 rounds in the
   same process, so that both methods see the same machine load: one exact call, then
   ``SEQUENCE`` sliced calls. ``sliced`` is the best of the calls that follow a sliced call
   (a flow calls it step after step), ``1st`` the best first call after the exact method,
   whose gigabyte of memory traffic has pushed the sliced call's arrays out of the
   processor caches (2-3 ms more at N = 10^4 on a 2-core VM); ``exact`` the best exact
   call; each ratio is exact / that sliced time. Above 10^4 one sliced call; geomloss and KeOps
   run once.
1b. Extra peak memory of one value + gradient call (MiB above the inputs, each method and N
   in a fresh subprocess after a call at N = 100 has loaded the libraries and compiled code;
   geomloss and KeOps too, when installed, up to N = 10^4;
   ``benchmarks/_memory.py``: the rise of the resident high-water mark on CPU, the
   allocator's peak on CUDA), with the ratio exact / sliced. The exact method's memory is
   bounded by its chunking, not by N^2.
2. The headline case N = M = 10^6 (3 10^4 with ``--quick``), run in a fresh subprocess so
   that its peak resident memory (``VmHWM``, including the 0.5 GB of input points and
   about 0.7 GB of imported libraries) is its own; wall and CPU seconds (user + system,
   which a loaded shared machine does not inflate).
3. Relative error of the sliced value and gradient vs the exact ones for growing P, with
   the fitted log-log slope (theory: -1/2).
4. Where the time of the sliced value + gradient goes at N = M = 10^4 (CPU float32, process
   CPU seconds, best of 20): the two matrix products (projection, back-projection) and the
   sort (by the sort the kernel chose on this machine: the two-pass radix sort of affine
   keys with the ordering of tied keys, or NumPy's sort of the packed 64-bit keys; the other
   one timed too, for comparison), timed alone with the kernel's own primitives, and the
   rest (the walk: ranks, scatter, value) as the difference to the whole call.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

# libgomp's default wait policy keeps torch's OpenMP threads spinning for 5-10 ms after each
# parallel region, on the cores that the sliced kernel's own threads (and any other threads
# of the process) then need; the sliced call right after the exact method's regions took
# 14-15 ms instead of 9. Passive waiting removes that; both methods run under the same
# policy (an OMP_WAIT_POLICY set in the environment is kept: ACTIVE shows the spinning).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _memory import peak_memory_mib  # noqa: E402

from deepinv_pnn.sampling import mmd_riesz, random_directions, sliced_mmd_riesz  # noqa: E402
from deepinv_pnn.sampling.packed_keys import pack_and_sort, sort_method, sorted_indices_numpy  # noqa: E402
from deepinv_pnn.sampling.radix_walk import radix_scratch  # noqa: E402
from deepinv_pnn.sampling.sliced_mmd_cpu import uses_numba  # noqa: E402

if uses_numba():
    from deepinv_pnn.sampling.radix_walk import sort_rows  # noqa: E402

SEQUENCE = 4  # sliced calls per round of section 1 (the first follows the exact method)


def timed(fn, device, repeats=1, cpu=False):
    """Best wall time of ``repeats`` runs (and best process CPU time if ``cpu``)."""
    best, best_cpu = math.inf, math.inf
    out = None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    return ((best, best_cpu), out) if cpu else (best, out)


def data(n, d, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = torch.randn(n, d, generator=gen) * 1.1 + 0.1
    return x.to(device), y.to(device)


def geomloss_energy(x, y, backend="tensorized"):
    """geomloss's energy distance (half of MMD^2) with autograd; ``backend="online"`` is KeOps."""
    from geomloss import SamplesLoss

    xa = x.clone().requires_grad_()
    loss = SamplesLoss("energy", backend=backend)(xa, y)
    (grad,) = torch.autograd.grad(loss, xa)
    return 2 * loss.detach(), 2 * grad


def peak_rss_gb() -> float:
    """Peak resident memory of this process: ``VmHWM`` (fresh after ``exec``; ``ru_maxrss``
    can carry the parent's peak over a fork), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def headline(n, d, p, device):
    """Value + gradient at N = M = n in a fresh process; prints JSON."""
    sliced_mmd_riesz(*data(1000, d, device), n_projections=p, return_grad=True)  # warm-up (CUDA init)
    x, y = data(n, d, device)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t, _ = timed(lambda: sliced_mmd_riesz(x, y, n_projections=p, return_grad=True,
                                          generator=torch.Generator(device=device).manual_seed(0)), device)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    peak_gb = peak_rss_gb()
    gpu_gb = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    print(json.dumps({"n": n, "seconds": t, "cpu_seconds": cpu_s, "peak_rss_gb": peak_gb, "gpu_peak_gb": gpu_gb,
                      "inputs_gb": 2 * n * d * 4 / 2**30}))


def memory_probe(method, n, d, p, device):
    """Extra peak memory (MiB) of one value + gradient call of ``method`` at N = M = n; prints JSON."""
    def call(a, b):
        if method == "sliced":
            return sliced_mmd_riesz(a, b, p, return_grad=True, generator=torch.Generator(device=device).manual_seed(0))
        if method in ("geomloss", "keops"):
            return geomloss_energy(a, b, "tensorized" if method == "geomloss" else "online")
        return mmd_riesz(a, b, return_grad=True)

    call(*data(100, d, device))  # libraries, compiled loops, CUDA context
    x, y = data(n, d, device)
    _, mib = peak_memory_mib(lambda: call(x, y), device)
    print(json.dumps({"method": method, "n": n, "extra_mib": mib}))


def in_fresh_process(flags: list[str], device, threads) -> dict:
    """Run this script with ``flags`` in a new Python process; its last line of output, as JSON."""
    cmd = [sys.executable, __file__, *flags, "--device", str(device)]
    if threads:
        cmd += ["--threads", str(threads)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])


def memory_table(sizes, exact_max, d, p, device, threads, peers=()):
    """Section 1b; ``peers``: the installed geomloss backends ("geomloss", "keops"), up to 10^4."""
    peers = tuple(peers)
    print(f"{'N':>8} {'inputs':>8} {'sliced':>8} {'exact':>8} {'ratio':>7}"
          + "".join(f" {name:>9} {'ratio':>7}" for name in peers))
    for n in sizes:
        mib = {}
        methods = ("sliced", "exact", *peers) if n <= min(exact_max, 10000) else (
            ("sliced", "exact") if n <= exact_max else ("sliced",))
        for method in methods:
            mib[method] = in_fresh_process(["--memory-probe", method, str(n)], device, threads)["extra_mib"]
        sliced = max(mib["sliced"], 1e-3)
        inputs = 2 * n * d * 4 / 2**20
        row = f"{n:>8} {inputs:8.1f} {mib['sliced']:8.1f} {mib.get('exact', math.nan):8.1f} {mib.get('exact', math.nan) / sliced:7.1f}"
        row += "".join(f" {mib.get(name, math.nan):9.1f} {mib.get(name, math.nan) / sliced:7.1f}" for name in peers)
        print(row, flush=True)


def breakdown(n, d, p, repeats=20):
    """CPU-seconds breakdown of one float32 value + gradient call at N = M = n."""
    x, y = data(n, d, torch.device("cpu"))
    xi = random_directions(d, p, torch.Generator().manual_seed(0))
    z = torch.empty(p, 2 * n)
    keys = np.empty((p, 2 * n))
    grad = torch.randn(p, 2 * n)
    index = np.arange(2 * n, dtype=np.int64)
    low = np.empty((p, 2 * n), dtype=np.int64)  # scratch of the NumPy passes

    def project():
        z[:, :n].addmm_(xi.T, x.T, beta=0)
        z[:, n:].addmm_(xi.T, y.T, beta=0)

    total = 2 * n
    radix = radix_scratch(total)

    def sort(method):  # the whole [P, 2n] array, sorted in cache-sized row blocks as the kernel does
        rows = max(1, 2**18 // total)
        zn = z.numpy()
        for r in range(0, p, rows):
            block = keys[r : r + rows]
            if uses_numba() and method == "radix":  # the two passes and the ordering of tied keys
                sort_rows(zn[r : r + rows], radix)
            elif uses_numba():  # the kernel's own packing and NumPy's sort
                pack_and_sort(zn[r : r + rows], block, block.view(np.int64))
            else:  # the NumPy passes' packing, sort and unpacking
                block[...] = zn[r : r + rows]
                sorted_indices_numpy(block, index, low[: len(block)])

    used = sort_method() if uses_numba() else "numpy"
    parts = {
        "projection x, y (2 GEMM)": project,
        f"sort ({used}, used)": lambda: sort(used),
        "back-projection (GEMM)": lambda: torch.mm(grad[:, :n].T, xi.T),
        "whole call": lambda: sliced_mmd_riesz(x, y, projections=xi, return_grad=True),
    }
    project()
    times = {name: timed(fn, torch.device("cpu"), repeats, cpu=True)[0][1] for name, fn in parts.items()}
    times["rest: walk (ranks, scatter, value)"] = times["whole call"] - sum(
        t for name, t in times.items() if name != "whole call"
    )
    if uses_numba():  # the sort that the kernel did not choose on this machine, for comparison
        other = next(method for method in ("numpy", "radix") if method != used)
        times[f"sort ({other}, not used)"] = timed(
            lambda: sort(other), torch.device("cpu"), repeats, cpu=True)[0][1]
    return times


def ratio_rounds(rounds, n, d, p, device):
    """Section 1's N = n row alone, round by round: the exact call, then ``SEQUENCE`` sliced calls."""
    x, y = data(n, d, device)
    gen = torch.Generator(device=device).manual_seed(0)
    sliced = lambda: sliced_mmd_riesz(x, y, p, generator=gen, return_grad=True)  # noqa: E731
    exact = lambda: mmd_riesz(x, y, return_grad=True)  # noqa: E731
    exact(), sliced()  # untimed first calls (buffers, compiled code)
    print(f"# N = M = {n}, d = {d}, P = {p}, torch threads {torch.get_num_threads()}; per round: exact (s), "
          "best sliced call of the sequence (ms), ratio")
    ratios, best_exact, best_sliced = [], math.inf, math.inf
    for r in range(rounds):
        te = timed(exact, device)[0]
        ts = min(timed(sliced, device)[0] for _ in range(SEQUENCE))
        ratios.append(te / ts)
        best_exact, best_sliced = min(best_exact, te), min(best_sliced, ts)
        print(f"{r:>4} {te:8.3f} {1e3 * ts:8.2f} {te / ts:7.1f}", flush=True)
    ratios.sort()
    print(f"per-round ratio: min {ratios[0]:.1f}, median {ratios[len(ratios) // 2]:.1f}, max {ratios[-1]:.1f}; "
          f"best exact / best sliced: {best_exact:.3f} s / {1e3 * best_sliced:.2f} ms = {best_exact / best_sliced:.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 60 s")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--exact-max", type=int, default=None, help="largest N for the exact method")
    parser.add_argument("--ratio-rounds", type=int, default=None, metavar="R",
                        help="only the N = 10^4 ratio, in R rounds (one exact call, then the sliced "
                             "sequence, per round): the spread of the per-round ratio")
    parser.add_argument("--headline", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-probe", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    d, p = 64, 100
    if args.headline:
        return headline(args.headline, d, p, device)
    if args.memory_probe:
        return memory_probe(args.memory_probe[0], int(args.memory_probe[1]), d, p, device)
    if args.ratio_rounds:
        return ratio_rounds(args.ratio_rounds, 10000, d, p, device)
    try:
        import geomloss  # noqa: F401

        have_geomloss = True
    except ImportError:
        have_geomloss = False
    try:  # KeOps through geomloss's "online" backend (compiles its kernel on the first call)
        import pykeops  # noqa: F401

        have_keops = have_geomloss
    except ImportError:
        have_keops = False
    if have_keops:
        geomloss_energy(*data(100, d, device), backend="online")
    sliced_mmd_riesz(*data(1000, d, device), n_projections=p, return_grad=True)  # warm-up (CUDA init)
    kernel = f"numba loops, {sort_method()} sort" if uses_numba() else "NumPy passes"
    print(f"# device {device}, torch threads {torch.get_num_threads()}, d={d}, P={p}, geomloss {have_geomloss}, keops {have_keops}, "
          f"CPU float32 kernel: {kernel}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")

    print("\n## 1. value + gradient time (s) vs N; ratio = exact / sliced (wall | process CPU seconds);")
    print("##    sliced: in a sequence of calls, 1st: first call after the exact method (wall)")
    print(f"{'N':>8} {'sliced':>15} {'exact cdist':>15} {'ratio':>11} {'1st':>7} {'ratio':>6} "
          f"{'geomloss':>15} {'ratio':>11} {'keops':>15} {'ratio':>11}")
    sizes = [1000, 3000] if args.quick else [1000, 3000, 10000, 30000, 100000]
    exact_max = args.exact_max or (3000 if args.quick else 10000)
    for n in sizes:
        x, y = data(n, d, device)
        gen = torch.Generator(device=device).manual_seed(0)
        reps = 5 if n <= 10000 else 1
        methods = {"sliced": lambda x=x, y=y, g=gen: sliced_mmd_riesz(x, y, p, generator=g, return_grad=True)}
        if n <= exact_max:
            methods["exact"] = lambda x=x, y=y: mmd_riesz(x, y, return_grad=True)
        best = {name: (math.inf, math.inf) for name in [*methods, "first"]}

        def record(name, t, best=best):
            best[name] = (min(best[name][0], t[0]), min(best[name][1], t[1]))

        if reps > 1:  # untimed first calls (buffers, caches), then the rounds
            for fn in methods.values():
                fn()
        for _ in range(reps):
            if "exact" in methods:
                record("exact", timed(methods["exact"], device, 1, cpu=True)[0])
                record("first", timed(methods["sliced"], device, 1, cpu=True)[0])
            for _ in range(SEQUENCE - 1 if reps > 1 else 1):
                record("sliced", timed(methods["sliced"], device, 1, cpu=True)[0])
        ts, te = best["sliced"], best.get("exact", (math.nan, math.nan))
        t1 = best["first"][0] if "exact" in methods else math.nan
        tg = tk = (math.nan, math.nan)
        if have_geomloss and n <= min(exact_max, 10000):
            tg, _ = timed(lambda x=x, y=y: geomloss_energy(x, y), device, 1, cpu=True)
        if have_keops and n <= min(exact_max, 10000):
            tk, _ = timed(lambda x=x, y=y: geomloss_energy(x, y, "online"), device, 1, cpu=True)

        def cell(t):
            return f"{t[0]:7.3f}|{t[1]:7.3f}"

        def ratio(t, ts=ts):
            return f"{t[0] / ts[0]:5.1f}|{t[1] / ts[1]:5.1f}"

        print(f"{n:>8} {cell(ts):>15} {cell(te):>15} {ratio(te):>11} {t1:7.3f} {te[0] / t1:6.1f} "
              f"{cell(tg):>15} {ratio(tg):>11} {cell(tk):>15} {ratio(tk):>11}", flush=True)
        del x, y

    print("\n## 1b. extra peak memory of one value + gradient call (MiB, fresh process each); ratio = method / sliced")
    memory_table(sizes, exact_max, d, p, device, args.threads,
                 peers=[name for name, have in (("geomloss", have_geomloss), ("keops", have_keops)) if have])

    n_head = 30000 if args.quick else 1000000
    print(f"\n## 2. headline: N = M = {n_head}, d = {d}, P = {p}, value + gradient (fresh process)")
    print(json.dumps(in_fresh_process(["--headline", str(n_head)], args.device, args.threads)))

    print("\n## 3. relative error of the sliced estimate vs P (N = M = 2000, float64, mean over runs)")
    x, y = data(2000, d, device)
    x, y = x.double(), y.double()
    exact, exact_grad = mmd_riesz(x, y, return_grad=True)
    ps = [10, 100, 1000] if args.quick else [10, 30, 100, 300, 1000, 3000]
    n_runs = 5 if args.quick else 10
    errs, gerrs = [], []
    gen = torch.Generator(device=device).manual_seed(1)
    print(f"{'P':>6} {'value rel err':>14} {'grad rel err':>13}")
    for pp in ps:
        runs = [sliced_mmd_riesz(x, y, pp, generator=gen, return_grad=True) for _ in range(n_runs)]
        errs.append(float(np.sqrt(np.mean([(float(v) / float(exact) - 1) ** 2 for v, _ in runs]))))
        gerrs.append(float(np.mean([float((g - exact_grad).norm() / exact_grad.norm()) for _, g in runs])))
        print(f"{pp:>6} {errs[-1]:>14.4f} {gerrs[-1]:>13.4f}", flush=True)
    print(f"log-log slopes: value {np.polyfit(np.log(ps), np.log(errs), 1)[0]:.2f}, "
          f"gradient {np.polyfit(np.log(ps), np.log(gerrs), 1)[0]:.2f} (theory -0.5)")

    if device.type == "cpu":
        n_b = 3000 if args.quick else 10000
        print(f"\n## 4. where the sliced time goes, N = M = {n_b}, float32 (process CPU ms, best of 20)")
        for name, t in breakdown(n_b, d, p).items():
            print(f"{name:>38} {1e3 * t:8.2f}")


if __name__ == "__main__":
    main()
