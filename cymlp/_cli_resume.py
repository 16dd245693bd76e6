"""``cymlp train --resume MODEL.npz``: continue a saved run, its settings checked as the command line's own.

``cymlp train --save`` keeps the run's settings in the training state's
``meta["cli"]`` (:func:`settings_to_save`); ``--resume`` takes those the
command line leaves at their defaults (:func:`resume`).  The file is
untrusted: the saved settings are turned back into command-line words
(``--lr=0.003``, ``--nesterov``, ...) and parsed by the ``train`` parser
itself, so a saved value gets exactly the checks, conversions and messages a
typed one gets (one code path, no second list of rules).  A value the command
line could not express (a list, a string for a switch, ``"no"`` for a flag)
is refused the same way.
"""

import argparse

from ._cli_data import CommandError

# The options a resumed run takes from the saved one unless the command line sets them to
# other values than their defaults.
RESUMED_OPTIONS = ("dataset", "standardize", "validation_fraction", "train_size", "epochs", "batch_size",
                   "optimizer", "lr", "momentum", "nesterov", "weight_decay", "lr_schedule",
                   "early_stopping", "patience", "parallel", "seed", "class_weight", "clip_norm")
ARCHITECTURE_OPTIONS = ("sizes", "hidden", "activation", "output", "loss", "dtype")
# the settings whose per-dataset defaults cmd_train resolves: saved resolved
_RESOLVED = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "lr_schedule",
             "standardize")


class _SettingsError(Exception):
    pass


class _RaisingParser(argparse.ArgumentParser):
    """The command line's parser, raising instead of printing usage and exiting."""

    def error(self, message):
        raise _SettingsError(message)


def settings_to_save(args, settings):
    """What ``--save`` keeps in ``meta["cli"]``: the run's options, per-dataset defaults resolved."""
    return {**{option: getattr(args, option) for option in RESUMED_OPTIONS},
            **{key: settings[key] for key in _RESOLVED}}


def resume(args, build_parser, load):
    """Load ``args.resume`` and fill ``args`` from the saved run; returns the network.

    ``build_parser(parser_class)`` builds the ``cymlp`` parser; ``load`` is
    ``Network.load``.  Options the command line sets to other values than
    their defaults win over the saved ones (and a saved value they replace
    is not looked at).
    """
    net = load(args.resume, backend=args.backend, n_threads=args.threads,
               max_bytes=args.max_model_bytes)
    state = net.training_state_
    if state is None:
        raise CommandError(f"--resume {args.resume}: the file holds no training state (saved by "
                           f"save(path, training_state=False), by an older cymlp, or after a "
                           f"hogwild/average run); train afresh without --resume")
    defaults = vars(build_parser(argparse.ArgumentParser).parse_args(["train"]))
    for option in ARCHITECTURE_OPTIONS:
        if getattr(args, option) != defaults[option]:
            raise CommandError(f"--resume takes the network from {args.resume}; drop "
                               f"--{option.replace('_', '-')}")
    saved = state.meta.get("cli")
    if saved is None:
        saved = {}
    if not isinstance(saved, dict):
        raise CommandError(f"--resume {args.resume}: the saved command-line settings are not a "
                           f"mapping ({type(saved).__name__}); train afresh without --resume")
    wanted = [option for option in RESUMED_OPTIONS
              if option in saved and getattr(args, option) == defaults[option]]
    parsed = _parse_saved(args.resume, {option: saved[option] for option in wanted}, build_parser)
    for option in wanted:
        setattr(args, option, getattr(parsed, option))
    args.dtype = net.dtype.name
    return net


def _parse_saved(path, saved, build_parser):
    """The saved settings parsed by the ``train`` parser: an ``argparse.Namespace``."""
    words = []
    try:
        for option, value in saved.items():
            words += _words(option, value)
        return build_parser(_RaisingParser).parse_args(["train", *words])
    except _SettingsError as exc:
        raise CommandError(f"--resume {path}: the settings saved in the model are not valid: {exc}; "
                           f"set the option on the command line, or train afresh") from None


# The train options that take no value: (word for true, word for false); None: leave it out.
_SWITCHES = {"standardize": ("--standardize", "--no-standardize"),
             "nesterov": ("--nesterov", None), "early_stopping": ("--early-stopping", None)}


def _words(option, value):
    """The command-line words that give ``option`` the saved ``value`` (None: its default)."""
    flag = "--" + option.replace("_", "-")
    if value is None:
        return []
    if option in _SWITCHES:
        if not isinstance(value, bool):
            raise _SettingsError(f"argument {flag}: expected true or false, got {value!r}")
        word = _SWITCHES[option][0 if value else 1]
        return [word] if word else []
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _SettingsError(f"argument {flag}: expected a single value, got {value!r}")
    return [f"{flag}={value!r}" if isinstance(value, float) else f"{flag}={value}"]
