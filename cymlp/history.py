"""Training history: per-epoch lists, printable, plottable, serialisable."""

import json

import numpy as np

from ._files import save_figure, write_text

_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "examples_per_second")


class History:
    """What happened during :meth:`cymlp.Network.fit`, one entry per epoch.

    Attributes are lists of equal length: ``epoch``, ``loss`` (mean training
    loss over the epoch's batches, each measured before its update),
    ``accuracy`` (same, for classification; ``None`` otherwise), ``val_loss``
    and ``val_accuracy`` (after the epoch, when validation data is given),
    ``lr``, ``seconds`` and ``examples_per_second``.

    ``stopped_early`` says whether early stopping or a callback ended the
    run, ``best_epoch`` which epoch's weights were restored (or None), and
    ``interrupted`` whether Ctrl-C ended it.
    """

    def __init__(self):
        for name in _COLUMNS:
            setattr(self, name, [])
        self.stopped_early = False
        self.interrupted = False
        self.diverged = False
        self.best_epoch = None

    def append(self, **row):
        for name in _COLUMNS:
            getattr(self, name).append(row.get(name))

    def __len__(self):
        return len(self.epoch)

    def __getitem__(self, name):
        """``history["loss"]`` is ``history.loss``; only the per-epoch columns are keys."""
        if not isinstance(name, str) or name not in _COLUMNS:
            raise KeyError(f"History is indexed by column name, one of {', '.join(_COLUMNS)}; "
                           f"got {name!r} (for epoch i use e.g. history.loss[i])")
        return getattr(self, name)

    def as_dict(self):
        out = {name: list(getattr(self, name)) for name in _COLUMNS}
        out.update(stopped_early=self.stopped_early, interrupted=self.interrupted,
                   diverged=self.diverged, best_epoch=self.best_epoch)
        return out

    def to_json(self, path):
        """Write the history as JSON (:meth:`as_dict`), atomically.

        Only a regular file (or a new one) is written: a folder, FIFO or
        device at ``path`` raises ``OSError`` and is left alone.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        """
        write_text(path, json.dumps(self.as_dict(), indent=2, default=float))

    def format_epoch(self, i, epochs=None):
        """One line for an epoch: loss, accuracies, speed and time (as ``verbose`` prints it).

        Parameters
        ----------
        i : int
            Index of the epoch in the history (``-1``: the last).
        epochs : int or None
            The total to show as ``epoch i/epochs`` (None: the history's length).

        Returns
        -------
        str
            The line, without a newline.
        """
        epochs = epochs or len(self)
        parts = [f"epoch {self.epoch[i]:>{len(str(epochs))}}/{epochs}", f"loss {self.loss[i]:.4f}"]
        for label, values in (("train_acc", self.accuracy), ("val_loss", self.val_loss),
                              ("val_acc", self.val_accuracy)):
            if values[i] is not None:
                parts.append(f"{label} {values[i]:.4f}")
        parts.append(f"{self.examples_per_second[i]:>9,.0f} ex/s")
        parts.append(f"{self.seconds[i]:.2f} s")
        return "  ".join(parts)

    def __repr__(self):
        last = f", last loss {self.loss[-1]:.4g}" if self.loss else ""
        return f"<History {len(self)} epochs{last}>"

    def plot(self, path=None):
        """Plot loss and accuracy curves (needs matplotlib).

        The figure is made with matplotlib's object API: it is not registered
        with ``pyplot`` (nothing to close, no figure left open) and the
        process's backend is never changed.  In a notebook, the returned
        figure displays as the cell's result; in a script, save it
        (``path=``) or hand it to pyplot to show it in a window,
        ``plt.figure(fig); plt.show()`` (recent matplotlib, e.g. 3.11).

        Parameters
        ----------
        path : str or os.PathLike or None
            Save the figure there when given (PNG, 100 dpi; the format follows
            the extension), atomically: only a regular or new file is written.

        Returns
        -------
        matplotlib.figure.Figure
            The figure (loss, and accuracy for a classifier).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib") from None
        has_acc = any(a is not None for a in self.accuracy)
        fig = Figure(figsize=(10 if has_acc else 5, 4))
        axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)
        panels = [("loss", self.loss, self.val_loss)]
        if has_acc:
            panels.append(("accuracy", self.accuracy, self.val_accuracy))
        for ax, (name, train, val) in zip(axes[0], panels):
            ax.plot(self.epoch, _nan(train), "o-", label="train")
            if any(x is not None for x in val):
                ax.plot(self.epoch, _nan(val), "s-", label="validation")
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.set_title(name)
            ax.legend()
        fig.tight_layout()
        if path is not None:
            save_figure(fig, path, dpi=100)
        return fig


def _nan(values):
    return np.array([np.nan if v is None else v for v in values], dtype=float)
