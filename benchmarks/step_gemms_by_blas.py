"""One training step's GEMMs through NumPy's OpenBLAS and through PyTorch's BLAS (MKL on x86).

``cymlp bench --fit``'s floor multiplies with NumPy (OpenBLAS, like the
compiled path, which calls SciPy's); PyTorch's CPU wheels multiply with
MKL.  Where PyTorch's plain loop beats cymlp, this says whether its GEMMs
alone do: the same products (``cymlp.bench.cases.gemm_shapes``) through
``numpy.matmul`` and ``torch.mm`` with ``out=``, each library in a process of
its own (an idle thread pool of the other slows it), rounds alternated.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/step_gemms_by_blas.py seed float32 2
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def time_steps(lib, case_name, dtype, threads, steps, samples):
    """Median and fastest seconds of one step's GEMMs through ``lib``, in this process."""
    import numpy as np

    from cymlp.bench.cases import gemm_shapes
    from cymlp.bench.fit_cases import FIT_CASES
    case = FIT_CASES[case_name]
    rng = np.random.default_rng(0)
    ops = [(rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype),
            np.empty((m, n), dtype)) for _, m, k, n in gemm_shapes(case.sizes, case.batch_size)]
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
        ops = [tuple(torch.from_numpy(x) for x in op) for op in ops]
        mm = torch.mm
    else:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
        mm = np.matmul

    def step():
        for a, b, out in ops:
            mm(a, b, out=out)
    for _ in range(steps):
        step()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times), min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", help="a case of cymlp bench --fit")
    parser.add_argument("dtype", choices=("float32", "float64"))
    parser.add_argument("threads", type=int)
    parser.add_argument("--libs", default="numpy,torch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="steps per sample")
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        med, best = time_steps(args.worker, args.case, args.dtype, args.threads, args.steps, args.samples)
        print(json.dumps({"median": med, "min": best}))
        return 0
    for _ in range(args.rounds):
        for lib in args.libs.split(","):
            out = subprocess.run([sys.executable, __file__, args.case, args.dtype, str(args.threads),
                                  "--steps", str(args.steps), "--samples", str(args.samples), "--worker", lib],
                                 check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{lib:6s} {args.case} {args.dtype} {args.threads} threads: one step's GEMMs "
                  f"{r['median'] * 1e3:.2f} ms median, {r['min'] * 1e3:.2f} ms fastest", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
