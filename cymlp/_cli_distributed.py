"""``cymlp train --workers N`` / ``--scheduler ADDRESS``: training on a Dask cluster from the CLI."""

import numpy as np

from ._cli_data import CommandError


def _check_distributed_args(args):
    if args.workers is not None and args.scheduler is not None:
        raise CommandError("--workers starts a local Dask cluster and --scheduler uses an existing one; "
                           "give one of them")
    if args.early_stopping:
        raise CommandError("--early-stopping is not available with --workers/--scheduler")
    if getattr(args, "resume", None):
        raise CommandError("--resume continues a single-process run; it is not available with "
                           "--workers/--scheduler")
    if args.parallel != "sync":
        raise CommandError("--parallel chooses threads inside one process; with --workers/--scheduler "
                           "use --strategy")
    for option in ("dropout", "class_weight", "clip_norm"):
        if getattr(args, option, None):
            raise CommandError(f"--{option.replace('_', '-')} trains in a single process; it is not "
                               f"available with --workers/--scheduler")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise CommandError("--workers/--scheduler need Dask: pip install \"dask[distributed]\"") from None


def _fit_on_dask(args, s, net, X, y, reporter):
    """``cymlp train --workers N`` / ``--scheduler ADDRESS``: fit_distributed with the CLI's settings."""
    from .distributed import connect, fit_distributed
    validation_data = None
    if args.validation_fraction:
        split = np.random.default_rng(args.seed).permutation(len(X))
        n_val = max(1, int(round(args.validation_fraction * len(X))))
        validation_data = (X[split[:n_val]], y[split[:n_val]])
        X, y = X[split[n_val:]], y[split[n_val:]]
    client = None
    if args.scheduler is not None:
        try:
            client = connect(args.scheduler, timeout=args.timeout)
        except (OSError, ValueError) as exc:      # unknown host, no answer, not an address
            raise CommandError(f"--scheduler {args.scheduler}: {exc}") from None
    try:
        fit_distributed(net, X, y, client=client, n_workers=args.workers, threads_per_worker=args.threads,
                        strategy=args.strategy, average_every=args.average_every, epochs=s["epochs"],
                        batch_size=s["batch_size"], lr=s["lr"], lr_schedule=s["lr_schedule"], seed=args.seed,
                        validation_data=validation_data, callbacks=[reporter.epoch_done],
                        optimizer=s["optimizer"], momentum=s["momentum"], nesterov=args.nesterov,
                        weight_decay=s["weight_decay"])
    finally:
        if client is not None:
            client.close(timeout=5)
