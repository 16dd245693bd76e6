"""The ``cymlp`` command line: train on real data, evaluate a saved model, describe the install.

::

    cymlp train                                   # digits, a few seconds, prints test accuracy
    cymlp train --dataset fashion-mnist --threads 2 --save fmnist.npz
    cymlp train --resume fmnist.npz --epochs 4 --save fmnist.npz   # 4 more epochs
    cymlp predict fmnist.npz --dataset fashion-mnist
    cymlp export fmnist.npz --onnx fmnist.onnx         # for onnxruntime and other runtimes
    cymlp info

Subcommands are argparse subparsers.  Each ``add_*_parser(subparsers)``
creates its parser and sets ``func``, a function ``func(args) -> exit code``.
A subcommand that lives in its own module (``cymlp bench`` in
:mod:`cymlp.bench`) exposes the same ``add_parser(subparsers)`` and is
registered in :data:`_PLUGIN_MODULES` when it is importable.

Exit codes: 0 success, 1 a runtime error (one clear message on stderr),
2 bad arguments, 130 interrupted by Ctrl-C (after saving and reporting).

Data sets (``--dataset``)
-------------------------
``digits``
    The 8x8 UCI digits bundled with cymlp: a stratified 80/20 train/test
    split drawn with ``--seed`` (the seed is stored in a saved model, so
    ``cymlp predict`` draws the same test split).
``fashion-mnist``
    Zalando's Fashion-MNIST, 60,000 training and 10,000 test images, found or
    downloaded once (30 MB, checksummed, cached in ``~/.cache/cymlp``) as
    :func:`cymlp.datasets.load_fashion_mnist` describes.
a folder
    Four IDX files in the MNIST/Fashion-MNIST naming
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, optionally
    ``.gz``), 28x28 uint8 images; pixels are scaled to [0, 1].
a ``.npz`` file
    Arrays ``X_train``, ``y_train``, ``X_test``, ``y_test``: X with one
    example per row (higher-dimensional examples are flattened), y integer
    class labels 0..k-1.  uint8 inputs are divided by 255; other inputs are
    used as they are.

Inputs are standardized (zero mean, unit variance, with training-split
statistics) when ``--standardize`` is on, the default for ``digits`` and
``fashion-mnist``.  The
transform is folded into the first layer's weights and biases after training,
so a saved model takes the unstandardized inputs and ``cymlp predict`` needs
no preprocessing state.
"""

import argparse
import functools
import importlib
import json
import math
import sys
import time
import warnings

from threadpoolctl import threadpool_limits

from . import reference
from ._cli_data import (
    CommandError,
    _check_output_path,
    _fold_standardization,
    _n_classes,
    _unfold_standardization,
    add_max_model_bytes,
    column_mean_std,
    load_dataset,
)
from ._cli_distributed import _check_distributed_args, _fit_on_dask
from ._cli_resume import resume, settings_to_save
from ._files import write_text
from ._fit_checks import LR_SCHEDULES, PARALLEL_STRATEGIES
from .exceptions import TrainingDiverged
from .network import Network
from .training_state import OPTIMIZERS

# Subcommands living in their own modules, each exposing add_parser(subparsers).
_PLUGIN_MODULES = ("bench", "_cli_export")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# Per-dataset defaults for whatever the command line leaves unset, chosen by
# measurement (seeds 0-15, both backends): digits reaches about 0.98 test
# accuracy (0.97 or more for 15 of 16 seeds) in under a second of training;
# Fashion-MNIST 0.894-0.895 test accuracy in 10 epochs (seeds 0-3; 12 gave 0.897 for
# 20% more time), about 0.45 s each compiled on 2 cores, 1 s with NumPy.
DATASET_DEFAULTS = {
    "digits": dict(hidden=(512,), epochs=30, batch_size=32, optimizer="adam", lr=0.003, momentum=0.9,
                   lr_schedule="cosine", weight_decay=1e-3, standardize=True),
    "fashion-mnist": dict(hidden=(256, 128), epochs=10, batch_size=128, optimizer="adam", lr=0.001,
                          momentum=0.9, lr_schedule="cosine", weight_decay=0.0, standardize=True),
}
GENERIC_DEFAULTS = dict(hidden=(100,), epochs=10, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9,
                        lr_schedule="constant", weight_decay=0.0, standardize=False)
# The learning rate when --optimizer differs from the data set's default optimizer.
OPTIMIZER_DEFAULT_LR = {"sgd": 0.05, "adam": 0.001}


# ------------------------------------------------------------------ argument types


def _int_list(text):
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 256,128; got {text!r}") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers like 256,128; got {text!r}")
    return tuple(values)


def _number(kind, low, *, low_open=False, high=None, high_open=False):
    """An argparse type for a number in an interval."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        if high is not None:
            ok = ok and (value < high if high_open else value <= high)
        if not ok:
            lo = f"{'(' if low_open else '['}{low}"
            hi = f"{high}{')' if high_open else ']'}" if high is not None else "inf)"
            raise argparse.ArgumentTypeError(f"must be in {lo}, {hi}; got {text}")
        return value
    return parse


# ------------------------------------------------------------------ progress


class _EpochReporter:
    """A progress bar during each epoch and one line per finished epoch.

    The bar is tqdm's when tqdm is installed and stderr is a terminal, a
    plain ``\\r`` bar on a terminal without tqdm, and nothing otherwise (the
    epoch lines are the progress then).  Epoch lines go to stdout.
    """

    def __init__(self, epochs, bar=True, lines=True):
        self.epochs = epochs
        self.lines = lines
        self.printed = 0
        self._bar = None
        self._bar_epoch = None
        self._plain_width = 0
        terminal = bar and sys.stderr.isatty()
        self._tqdm = None
        if terminal:
            try:
                from tqdm import tqdm
                self._tqdm = tqdm
            except ImportError:
                pass
        self._mode = "tqdm" if self._tqdm else ("plain" if terminal else None)

    def progress(self, epoch, batches_done, n_batches):
        if self._mode is None:
            return
        if self._bar_epoch != epoch:
            self.close_bar()
            self._bar_epoch = epoch
            if self._mode == "tqdm":
                self._bar = self._tqdm(total=n_batches, desc=self._label(epoch), unit="batch",
                                       leave=False, file=sys.stderr, dynamic_ncols=True)
        if self._mode == "tqdm":
            self._bar.update(batches_done - self._bar.n)
        else:
            filled = 30 * batches_done // n_batches
            text = (f"\r{self._label(epoch)} [{'#' * filled}{'.' * (30 - filled)}] "
                    f"{batches_done}/{n_batches}")
            self._plain_width = len(text)
            sys.stderr.write(text)
            sys.stderr.flush()

    def _label(self, epoch):
        return f"epoch {epoch + 1}/{self.epochs}"

    def close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._plain_width:
            sys.stderr.write("\r" + " " * self._plain_width + "\r")
            sys.stderr.flush()
            self._plain_width = 0
        self._bar_epoch = None

    def epoch_done(self, history):
        """A fit callback: print the rows not printed yet."""
        self.close_bar()
        while self.printed < len(history):
            i = self.printed
            self.printed += 1
            if self.lines:
                print(history.format_epoch(i, self.epochs), flush=True)


# ------------------------------------------------------------------ train


def add_train_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a network on a data set and report its test accuracy",
        description="Train a network, print one line per epoch and the test accuracy; "
                    "optionally save the model, the history (JSON) and its curves (PNG). "
                    "Unset options take per-dataset defaults (digits: hidden 512, adam lr 0.003, "
                    "30 epochs, batch 32, cosine schedule, weight decay 1e-3, standardized inputs; "
                    "fashion-mnist: hidden 256,128, adam lr 0.001, 10 epochs, batch 128, cosine, "
                    "standardized inputs; other data: hidden 100, sgd lr 0.05 momentum 0.9, 10 epochs, batch 64).")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="digits", metavar="NAME|PATH",
                      help="digits (bundled), fashion-mnist (downloaded once if absent), a folder of IDX files "
                           "in the Fashion-MNIST naming, or an .npz with X_train, y_train, X_test, y_test "
                           "(default: digits)")
    data.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                      help="standardize inputs with training statistics (default: on for digits and "
                           "fashion-mnist)")
    data.add_argument("--validation-fraction", type=_number(float, 0, high=1, high_open=True),
                      default=0.1, metavar="F",
                      help="hold out this fraction of the training rows for validation; 0 for none "
                           "(default: 0.1)")
    data.add_argument("--train-size", type=_number(int, 1), default=None, metavar="N",
                      help="train on the first N training rows only (quick experiments)")

    model = p.add_argument_group("network")
    shape = model.add_mutually_exclusive_group()
    shape.add_argument("--sizes", type=_int_list, metavar="N,...,K",
                       help="all layer sizes, inputs first, e.g. 784,256,128,10 (must match the data)")
    shape.add_argument("--hidden", type=_int_list, metavar="H,...",
                       help="hidden layer sizes, e.g. 256,128; inputs and outputs come from the data")
    model.add_argument("--activation", choices=reference.HIDDEN_ACTIVATIONS, default="relu",
                       help="hidden activation (default: relu)")
    model.add_argument("--output", choices=("softmax", "sigmoid"), default="softmax",
                       help="output activation (default: softmax)")
    model.add_argument("--loss", choices=reference.LOSSES, default="cross_entropy",
                       help="loss (default: cross_entropy)")
    model.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="precision of parameters and computation (default: float32)")

    opt = p.add_argument_group("training")
    opt.add_argument("--epochs", type=_number(int, 0), help="passes over the training data")
    opt.add_argument("--batch-size", type=_number(int, 1), help="examples per step")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, help="sgd (with momentum) or adam")
    opt.add_argument("--lr", type=_number(float, 0, low_open=True),
                     help="learning rate (with an optimizer other than the data set's default: "
                          f"sgd {OPTIMIZER_DEFAULT_LR['sgd']}, adam {OPTIMIZER_DEFAULT_LR['adam']})")
    opt.add_argument("--momentum", type=_number(float, 0, high=1, high_open=True),
                     help="SGD momentum (default: 0.9)")
    opt.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    opt.add_argument("--weight-decay", type=_number(float, 0), help="L2 penalty on the weights")
    opt.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="constant, step (halve 4 times) or cosine")
    opt.add_argument("--dropout", type=_number(float, 0, high=1, high_open=True), default=0.0,
                     metavar="P", help="drop each hidden unit with probability P in training (default 0)")
    opt.add_argument("--class-weight", choices=("balanced",), default=None,
                     help="weight each class by n_samples / (n_classes * count)")
    opt.add_argument("--clip-norm", type=_number(float, 0, low_open=True), default=None, metavar="C",
                     help="clip each step's gradient to global L2 norm C")
    opt.add_argument("--early-stopping", action="store_true",
                     help="stop when the validation loss stops improving; keep the best epoch's weights")
    opt.add_argument("--patience", type=_number(int, 1), default=5,
                     help="epochs without improvement before early stopping (default: 5)")

    run = p.add_argument_group("execution")
    run.add_argument("--backend", choices=("cython", "numpy"), default=None,
                     help="compiled or NumPy path (default: the best available)")
    run.add_argument("--threads", type=_number(int, 1), default=None,
                     help="threads for the compiled path and BLAS (default: every usable core)")
    run.add_argument("--parallel", choices=PARALLEL_STRATEGIES, default="sync",
                     help="multi-threaded SGD strategy of the compiled path (default: sync)")
    run.add_argument("--workers", type=_number(int, 1), default=None, metavar="N",
                     help="train on a local Dask cluster of N worker processes, one shard of the data "
                          "each (needs `pip install \"dask[distributed]\"`; see docs/distributed.md)")
    run.add_argument("--scheduler", metavar="ADDRESS", default=None,
                     help="train on an existing Dask cluster, e.g. tcp://host:8786")
    run.add_argument("--timeout", type=_number(float, 0, low_open=True, high=7 * 24 * 3600), default=None,
                     metavar="SECONDS",
                     help="with --scheduler: seconds to wait for the scheduler to answer (default: "
                          "Dask's distributed.comm.timeouts.connect, 30 s unless configured)")
    run.add_argument("--strategy", choices=("average", "sync"), default="average",
                     help="with --workers/--scheduler: model averaging or synchronous SGD (default: average)")
    run.add_argument("--average-every", type=_number(int, 1), default=None, metavar="STEPS",
                     help="with --strategy average: local steps between averagings (default: once per epoch)")
    run.add_argument("--seed", type=_number(int, 0), default=0,
                     help="seeds initialisation, shuffling, the validation and digits splits (default: 0)")

    out = p.add_argument_group("output")
    out.add_argument("--save", metavar="MODEL.npz",
                     help="save the trained network here, with its training state (see --resume)")
    out.add_argument("--resume", metavar="MODEL.npz",
                     help="continue the run saved in MODEL.npz: its network, optimizer state and "
                          "settings; options set to other values than their defaults override the "
                          "settings, --epochs counts the epochs to add (default: as many as before)")
    add_max_model_bytes(out)
    out.add_argument("--json", metavar="FILE", help="write the history and test results as JSON")
    out.add_argument("--plot", metavar="FILE.png", help="plot loss and accuracy curves (needs matplotlib)")
    out.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bar during epochs")
    out.add_argument("-q", "--quiet", action="store_true", help="print the summary only")
    p.set_defaults(func=cmd_train)
    return p


def _settings(args, dataset):
    """The command line's values, with per-dataset defaults for those left unset."""
    defaults = dict(DATASET_DEFAULTS.get(dataset, GENERIC_DEFAULTS))
    if args.optimizer is not None and args.optimizer != defaults["optimizer"]:
        defaults["lr"] = OPTIMIZER_DEFAULT_LR[args.optimizer]
    return {key: getattr(args, key) if getattr(args, key, None) is not None else value
            for key, value in defaults.items()}


def cmd_train(args):
    t_start = time.perf_counter()
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError("--plot needs matplotlib: pip install matplotlib") from None

    for option, path in (("--save", args.save), ("--json", args.json), ("--plot", args.plot)):
        if path:
            _check_output_path(option, path)

    net = resume(args, build_parser, Network.load) if args.resume else None
    name, X_train, y_train, X_test, y_test = load_dataset(args.dataset, args.dtype, args.seed)
    if args.train_size is not None:
        X_train, y_train = X_train[:args.train_size], y_train[:args.train_size]
    s = _settings(args, name)
    n_features, n_classes = X_train.shape[1], _n_classes(y_train, y_test)
    if net is not None:
        sizes = list(net.sizes)
        if sizes[0] != n_features or sizes[-1] < n_classes:
            raise CommandError(f"--resume {args.resume}: the network {'-'.join(map(str, sizes))} does "
                               f"not fit {name}, which has {n_features} inputs and {n_classes} classes")
    elif args.sizes is not None:
        sizes = list(args.sizes)
        if len(sizes) < 2 or sizes[0] != n_features or sizes[-1] < n_classes:
            raise CommandError(f"--sizes {','.join(map(str, sizes))} does not fit {name}: it has "
                               f"{n_features} inputs and {n_classes} classes "
                               f"(e.g. --sizes {n_features},{','.join(map(str, s['hidden']))},{n_classes})")
    else:
        sizes = [n_features, *s["hidden"], n_classes]

    mean = std = None
    if s["standardize"]:
        mean, std = column_mean_std(X_train)
        std[std == 0] = 1
        # in place: X_train was just read from the file and is ours (a second copy of
        # Fashion-MNIST costs ~0.4 s, mostly the first touch of its pages)
        X_fit = X_train
        X_fit -= mean.astype(X_train.dtype)
        X_fit /= std.astype(X_train.dtype)
    else:
        X_fit = X_train

    start_epoch = 0
    if net is None:
        net = Network(sizes, activation=args.activation, output=args.output, loss=args.loss,
                      dtype=args.dtype, backend=args.backend, n_threads=args.threads, seed=args.seed)
    else:
        start_epoch = net.training_state_.epoch
        if mean is not None:          # the saved model takes raw inputs: train it on standardized ones
            _unfold_standardization(net, mean, std)
    if args.dropout:                  # on --resume the saved network keeps its own unless set here
        if len(sizes) < 3:
            raise CommandError(f"--dropout needs a hidden layer; --sizes {','.join(map(str, sizes))} has none")
        net.dropout = args.dropout
    if not args.quiet:
        if start_epoch:
            print(f"resuming {args.resume} after epoch {start_epoch} (optimizer step "
                  f"{net.training_state_.step})", flush=True)
        print(f"cymlp {_version()}: {name}, {len(X_train):,} training / {len(X_test):,} test rows; "
              f"network {'-'.join(map(str, sizes))} {args.activation}/{args.output}, {args.dtype}, "
              f"backend {net.backend}, {_threads_text(net, args)}", flush=True)
        print(f"{s['optimizer']} lr {s['lr']:g}"
              + (f" momentum {s['momentum']:g}{' nesterov' if args.nesterov else ''}"
                 if s["optimizer"] == "sgd" else "")
              + f", {s['lr_schedule']} schedule, batch {s['batch_size']}, {s['epochs']} epochs"
              + (f", weight decay {s['weight_decay']:g}" if s["weight_decay"] else "")
              + (", standardized inputs" if s["standardize"] else "")
              + (f", early stopping (patience {args.patience})" if args.early_stopping else "")
              + (f", dropout {'/'.join(f'{p:g}' for p in net.dropout)}" if any(net.dropout) else "")
              + (f", {args.class_weight} class weights" if args.class_weight else "")
              + (f", gradient norm clipped to {args.clip_norm:g}" if args.clip_norm else ""),
              flush=True)

    distributed = args.workers is not None or args.scheduler is not None
    if distributed:
        _check_distributed_args(args)
    reporter = _EpochReporter(start_epoch + s["epochs"], bar=args.progress and not args.quiet and not distributed,
                              lines=not args.quiet)
    interrupted = False
    t_fit = time.perf_counter()
    try:
        if distributed:
            _fit_on_dask(args, s, net, X_fit, y_train, reporter)
        else:
            with threadpool_limits(limits=args.threads, user_api="blas"):
                net.fit(X_fit, y_train, epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"],
                        momentum=s["momentum"], nesterov=args.nesterov, weight_decay=s["weight_decay"],
                        optimizer=s["optimizer"], lr_schedule=s["lr_schedule"],
                        validation_fraction=args.validation_fraction or None,
                        early_stopping=args.early_stopping, patience=args.patience,
                        callbacks=[reporter.epoch_done], progress=reporter.progress,
                        parallel=args.parallel, class_weight=args.class_weight,
                        clip_norm=args.clip_norm, resume=bool(args.resume))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if net.history_ is not None:
            reporter.epoch_done(net.history_)
        reporter.close_bar()
    fit_seconds = time.perf_counter() - t_fit
    history = net.history_

    if mean is not None:
        _fold_standardization(net, mean, std)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        test_accuracy = net.score(X_test, y_test)
        test_loss = net.loss(X_test, y_test)
    total_seconds = time.perf_counter() - t_start

    if interrupted:
        print(f"interrupted after {len(history)} epoch(s); reporting the weights of the last completed step",
              flush=True)
    elif history.best_epoch is not None:
        print(f"early stopping: kept the weights of epoch {history.best_epoch}", flush=True)
    n_correct = int(round(test_accuracy * len(X_test)))
    print(f"test accuracy {test_accuracy:.4f} ({n_correct:,}/{len(X_test):,}), test loss {test_loss:.4f}; "
          f"{len(history)} epochs, training {fit_seconds:.1f} s, total {total_seconds:.1f} s", flush=True)

    if args.save:
        if net.training_state_ is not None:     # what --resume needs to continue this run
            net.training_state_.meta["cli"] = settings_to_save(args, s)
        net.save(args.save)
        print(f"saved model to {args.save}")
    if args.json:
        record = history.as_dict()
        record.update(test_accuracy=test_accuracy, test_loss=test_loss, fit_seconds=fit_seconds,
                      total_seconds=total_seconds, dataset=name, sizes=sizes, backend=net.backend,
                      settings={**s, "hidden": list(s["hidden"])})
        write_text(args.json, json.dumps(record, indent=2, default=float))
        print(f"wrote history to {args.json}")
    if args.plot:
        if len(history):
            history.plot(args.plot)
            print(f"wrote curves to {args.plot}")
        else:
            print("no epoch finished; nothing to plot", file=sys.stderr)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _threads_text(net, args):
    per_worker = f"{args.threads} thread(s)" if args.threads is not None else None
    if args.workers is not None:
        return f"a local Dask cluster of {args.workers} worker process(es), {per_worker or '1 thread'} each"
    if args.scheduler is not None:
        return f"the Dask cluster at {args.scheduler}, {per_worker or 'each worker its own thread count'}"
    if net.backend == "numpy":
        return "BLAS threads: " + ("all" if net.n_threads is None else str(net.n_threads))
    return f"{net.effective_n_threads} threads"


def _version():
    from . import __version__
    return __version__


# ------------------------------------------------------------------ predict


def add_predict_parser(subparsers):
    p = subparsers.add_parser(
        "predict", help="evaluate a saved model on a data set's test split",
        description="Load a model saved by `cymlp train --save` and print its accuracy and loss "
                    "on the test split of --dataset.")
    p.add_argument("model", help="a .npz file written by `cymlp train --save` or Network.save")
    p.add_argument("--dataset", default="digits", metavar="NAME|PATH",
                   help="as for `cymlp train` (default: digits)")
    p.add_argument("--seed", type=_number(int, 0), default=None,
                   help="digits split seed (default: the seed stored in the model)")
    p.add_argument("--backend", choices=("cython", "numpy"), default=None)
    p.add_argument("--threads", type=_number(int, 1), default=None)
    add_max_model_bytes(p)
    p.set_defaults(func=cmd_predict)
    return p


def cmd_predict(args):
    t0 = time.perf_counter()
    try:
        net = Network.load(args.model, backend=args.backend, n_threads=args.threads,
                           max_bytes=args.max_model_bytes)
    except (ValueError, OSError) as exc:       # a damaged model file: one line, no traceback
        raise CommandError(" ".join(f"cannot load the model: {exc}".split())) from None
    seed = args.seed if args.seed is not None else net.seed
    name, _, _, X_test, y_test = load_dataset(args.dataset, net.dtype.name, seed)
    if X_test.shape[1] != net.sizes[0]:
        raise CommandError(f"{args.model} expects {net.sizes[0]} inputs but {name} has "
                           f"{X_test.shape[1]} features")
    with threadpool_limits(limits=args.threads, user_api="blas"):
        accuracy = net.score(X_test, y_test)
        loss = net.loss(X_test, y_test)
    n_correct = int(round(accuracy * len(X_test)))
    print(f"{args.model}: network {'-'.join(map(str, net.sizes))}, {name} test split "
          f"({len(X_test):,} rows)")
    print(f"test accuracy {accuracy:.4f} ({n_correct:,}/{len(X_test):,}), test loss {loss:.4f}; "
          f"{time.perf_counter() - t0:.1f} s")
    return EXIT_OK


# ------------------------------------------------------------------ info


def add_info_parser(subparsers):
    p = subparsers.add_parser("info", help="print version, backends, OpenMP, threads and BLAS",
                              description="Print what this installation can do (cymlp.show_config()).")
    p.set_defaults(func=cmd_info)
    return p


def cmd_info(args):
    from ._install_info import show_config
    show_config()
    return EXIT_OK


# ------------------------------------------------------------------ entry point


def build_parser(parser_class=argparse.ArgumentParser):
    """The ``cymlp`` parser (``parser_class``: its class and its subcommands')."""
    parser = parser_class(
        prog="cymlp", description="Train and evaluate multilayer perceptrons with cymlp.",
        epilog="Run `cymlp COMMAND --help` for the options of a command; `cymlp train` alone trains "
               "on the bundled digits in a few seconds.")
    parser.add_argument("--version", action="version", version=f"cymlp {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    add_train_parser(subparsers)
    add_predict_parser(subparsers)
    add_info_parser(subparsers)
    for module in _PLUGIN_MODULES:
        try:
            plugin = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise
            continue
        plugin.add_parser(subparsers)
    return parser


def _print_warning(command, message, category, filename, lineno, file=None, line=None):
    print(" ".join(f"cymlp {command}: warning: {message}".split()), file=sys.stderr, flush=True)


def main(argv=None):
    """Run the ``cymlp`` command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:      # --help, --version (0) and bad arguments (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.argv = argv
    try:
        with warnings.catch_warnings():     # a warning is one line too, without a source path
            warnings.showwarning = functools.partial(_print_warning, args.command)
            return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CommandError, TrainingDiverged, ValueError, OSError) as exc:
        print(f"cymlp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print(f"cymlp {args.command}: error: out of memory; try a smaller network, batch or data set",
              file=sys.stderr)
        return EXIT_ERROR
