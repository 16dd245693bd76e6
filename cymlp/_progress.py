"""``Network.fit(progress=True)``: a progress bar on stderr while a fit runs.

tqdm's bar when tqdm is installed (``tqdm.auto``: a widget in a Jupyter
notebook, text in a terminal), one bar for the whole fit counting batches,
with the last epoch's loss beside it.  Without tqdm, plain lines on stderr:
one per finished epoch (as ``verbose`` prints them to stdout) and, within an
epoch that takes longer, one every :data:`PLAIN_INTERVAL` seconds.  The bar
is made at the first progress report, so a ``fit`` rejected by its checks
prints nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .history import History

PLAIN_INTERVAL = 2.0       # seconds between the plain lines within an epoch


class FitProgress:
    """The ``progress`` and end-of-epoch callback of one ``fit(progress=True)``; :meth:`close` at the end."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self._first: int | None = None      # the index of the fit's first epoch (resumed fits: > 0)
        self._bar: Any = None
        self._plain = False
        self._last_line = 0.0

    def __call__(self, epoch: int, batches_done: int, n_batches: int) -> None:
        if self._first is None:
            self._first = epoch
            self._open(self.epochs * n_batches)
        label = f"epoch {epoch + 1}/{self._first + self.epochs}"
        if self._bar is not None:
            self._bar.set_description(label, refresh=False)
            self._bar.update((epoch - self._first) * n_batches + batches_done - self._bar.n)
        elif time.monotonic() - self._last_line >= PLAIN_INTERVAL and batches_done < n_batches:
            self._last_line = time.monotonic()
            print(f"cymlp fit: {label}, batch {batches_done:,}/{n_batches:,}", file=sys.stderr, flush=True)

    def _open(self, total: int) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._plain = True
            self._last_line = time.monotonic()
        else:
            self._bar = tqdm(total=total, unit="batch", desc="fit", file=sys.stderr, leave=True,
                             dynamic_ncols=True)

    def epoch_done(self, history: History) -> None:
        """A ``fit`` callback: the finished epoch's loss beside the bar, or its line."""
        if self._first is None:
            return
        if self._bar is not None:
            losses = {"loss": history.loss[-1]}
            if history.val_loss and history.val_loss[-1] is not None:
                losses["val_loss"] = history.val_loss[-1]
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=True)
        elif self._plain:
            print(f"cymlp fit: {history.format_epoch(-1, self._first + self.epochs)}", file=sys.stderr,
                  flush=True)
            self._last_line = time.monotonic()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
