"""Two fits at once on a shared machine: each against one alone (the default thread count).

Each child process fits ``[64, 32, 10]`` on 20,000 random rows (8 epochs, batch
64, float32) with ``n_threads`` left at its default (or ``--threads``), after a
warm-up; the children wait on stdin so that two of them start their timed fit
together.  A round times one child alone, then two at once, and reports the
slower of the two against the one alone.  Before any back-off (cymlp 0.1 before
issue 11) two at once took up to 70x one alone; docs/guarantees.md promises
4x at most with the default thread count (its rule is tested with a
deterministic timing stub in tests/test_threads.py; this script measures it).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/two_fits.py --rounds 5
"""

import argparse
import os
import statistics
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import cymlp
    threads = None if sys.argv[1] == "default" else int(sys.argv[1])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 64)).astype(np.float32)
    y = rng.integers(0, 10, 20000)
    net = cymlp.Network([64, 32, 10], seed=0, n_threads=threads)
    net.fit(X[:512], y[:512], epochs=1)                # warm up
    print("READY", flush=True)
    sys.stdin.readline()
    t = time.perf_counter()
    net.fit(X, y, epochs=8, batch_size=64)
    print("TOOK %.6f" % (time.perf_counter() - t), flush=True)
""")


def timed_fits(n, threads):
    """Start ``n`` children, release them at once, return each one's fit time."""
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, threads], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        for p in procs:
            while p.stdout.readline().strip() != "READY":
                pass
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        times = []
        for p in procs:
            line = p.stdout.readline()
            while not line.startswith("TOOK"):
                line = p.stdout.readline()
            times.append(float(line.split()[1]))
        return times
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", default="default", help="'default' (n_threads=None) or a count")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    ratios = []
    for r in range(args.rounds):
        alone = timed_fits(1, args.threads)[0]
        together = timed_fits(2, args.threads)
        ratios.append(max(together) / alone)
        print(f"round {r + 1}: alone {alone:.3f} s, two at once {together[0]:.3f} s and {together[1]:.3f} s: "
              f"{ratios[-1]:.2f}x (load {os.getloadavg()[0]:.2f})", flush=True)
    print(f"slower of two at once / one alone: median {statistics.median(ratios):.2f}x, "
          f"worst {max(ratios):.2f}x over {len(ratios)} rounds")


if __name__ == "__main__":
    main()
