"""The ``cymlp bench`` command line: options, and which benchmark they select.

``cymlp bench`` (or ``python -m cymlp.bench``) times one SGD step
(:mod:`.step`); ``--fit`` times end-to-end ``fit`` epochs (:mod:`.fit`);
``--strategies`` times the parallel SGD strategies to an accuracy
(:mod:`.strategies`).
"""

import argparse
import sys

from .. import reference
from .._files import check_writable
from . import fit, step, strategies
from .cases import CASES
from .fit_cases import FIT_CASES, FIT_IMPLEMENTATIONS
from .machine import default_n_threads

__all__ = ["add_arguments", "add_parser", "main", "run"]

DESCRIPTION = step.__doc__.split("\n\n")[0]


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help only where the help does not say its default
    already and there is one to say (``ArgumentDefaultsHelpFormatter`` printed both)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def _int_list(text):
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(choices):
    def parse(text):
        names = [x.strip() for x in text.split(",") if x.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {bad or text!r}; choose from {', '.join(choices)}")
        return names
    return parse


def _thread_list(text):
    if text == "all":
        return None
    return _int_list(text.replace("all", str(default_n_threads())))


def _positive_int(text):
    value = _int_list(text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"expected one positive integer, got {text!r}")
    return value[0]


def add_arguments(parser):
    """Add the ``bench`` options to ``parser`` (used by ``cymlp bench`` and ``python -m cymlp.bench``)."""
    parser.add_argument("--quick", action="store_true",
                        help="short timings, float32 only (under a minute)")
    parser.add_argument("--case", type=_name_list(list(CASES)), default=None,
                        help=f"comma-separated cases: {', '.join(CASES)} (default: all)")
    parser.add_argument("--impl", type=_name_list(list(dict.fromkeys([*step.IMPLEMENTATIONS, *FIT_IMPLEMENTATIONS]))),
                        default=None,
                        help=f"comma-separated implementations: {', '.join(step.IMPLEMENTATIONS)}; with --fit: "
                             f"{', '.join(FIT_IMPLEMENTATIONS)} (default: all that are installed)")
    parser.add_argument("--dtype", "--dtypes", type=_name_list(["float32", "float64"]), default=None,
                        help="float32, float64 or both (default: both; float32 with --quick)")
    parser.add_argument("--threads", type=_thread_list, default=None,
                        help="comma-separated thread counts, e.g. 1,2,4 ('all' = every usable core; "
                             "default: 1,all)")
    parser.add_argument("--sizes", type=_int_list, default=None,
                        help="your own network, e.g. 784,100,10 (replaces the built-in cases)")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="batch size for --sizes (default 32)")
    parser.add_argument("--activation", default="relu", choices=reference.HIDDEN_ACTIVATIONS,
                        help="hidden activation for --sizes")
    parser.add_argument("--output", default="softmax", choices=reference.OUTPUT_ACTIVATIONS,
                        help="output activation for --sizes")
    parser.add_argument("--loss", default="cross_entropy", choices=reference.LOSSES, help="loss for --sizes")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate for --sizes")
    parser.add_argument("--seconds", type=float, default=None,
                        help="measuring time per row after warm-up (default 1.5, 0.3 with --quick)")
    parser.add_argument("--json", metavar="FILE", default=None, help="write every figure and the machine here")
    parser.add_argument("--plot", metavar="FILE.png", default=None, help="bar chart (needs matplotlib)")
    parser.add_argument("--no-roofline", action="store_true", help="skip the GEMM roofline measurement")
    strategies.add_arguments(parser)        # --strategies: time to accuracy, parallel SGD
    parser.add_argument("--fit", action="store_true",
                        help="end-to-end fit epochs on Fashion-MNIST, digits and the seed network against "
                             "the GEMM floor and the peers, instead of the per-step benchmark")
    parser.add_argument("--cases", type=_name_list(list(FIT_CASES)), default=None,
                        help=f"with --fit: comma-separated cases, {', '.join(FIT_CASES)} (default: all)")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="with --fit: epochs per timed repeat (default 1)")
    parser.add_argument("--rows", type=_positive_int, default=None,
                        help="with --fit: at most this many training rows per case (default: all; "
                             "5000 with --quick)")
    parser.add_argument("--settle", type=float, default=None,
                        help="with --fit: seconds to let worker threads go idle before each timing "
                             f"(default {fit.SETTLE_SECONDS:g})")
    return parser


def add_parser(subparsers):
    """Register ``bench`` as a subcommand of the ``cymlp`` command line."""
    parser = subparsers.add_parser("bench", help="time one SGD step: loop, NumPy, compiled, threads, peers",
                                   description=DESCRIPTION,
                                   formatter_class=HelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=_run_command)
    return parser


def _run_command(args):
    run(args)
    return 0


def run(args):
    """Run the benchmark described by parsed ``args``; returns the JSON payload."""
    for path in (getattr(args, "json", None), getattr(args, "plot", None)):
        if path:
            check_writable(path)      # a folder, FIFO or device: refused before minutes of measuring
    if getattr(args, "strategies", False):
        return strategies.run(args)
    if getattr(args, "fit", False):
        return fit.run(args)
    return step.run(args)


def main(argv=None):
    """``python -m cymlp.bench [options]``."""
    parser = argparse.ArgumentParser(prog="cymlp bench", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    add_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    run(args)
    return 0
