"""Checks and derivations for the training terms: sample and class weights, dropout, clipping.

The maths lives in :mod:`cymlp.reference` (``backprop(..., sample_weight=,
masks=)``, ``dropout_masks``, ``clip_by_global_norm``); this module checks
the user's arguments once, at the Python boundary, and turns them into what
the backends take:

- ``sample_weight``: a float64 array (n,), non-negative, finite, with a
  positive sum.  Weights that are all equal define the unweighted problem
  (the weighted mean of any batch is then the plain mean), so they become
  ``None`` and run the unweighted code: all-ones weights give the unweighted
  result bit for bit.
- ``class_weight``: ``None``, ``"balanced"`` (n_samples / (n_classes ·
  bincount(y)) over the classes present, as scikit-learn) or a dict
  ``{class: weight}`` (classes not in it weigh 1); it multiplies the sample
  weights of the rows of each class.
- ``dropout``: one rate per hidden layer, each in [0, 1).
- ``clip_norm``: ``None`` or a finite number > 0.
"""

import numbers

import numpy as np

from . import _validation as v


def check_sample_weight(sample_weight, n_rows, name="sample_weight"):
    """A float64 array (n_rows,) of usable weights, or None for unweighted (see module doc)."""
    if sample_weight is None:
        return None
    w = v._as_float_array(name, sample_weight, np.float64,
                          non_finite_hint="weights must be finite numbers >= 0")
    if w.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array with one weight per row; got shape {w.shape}")
    if w.shape[0] != n_rows:
        raise ValueError(f"{name} has {w.shape[0]} weights but X has {n_rows} rows; pass one "
                         f"weight per row")
    if w.min() < 0:
        raise ValueError(f"{name} holds negative weights (the smallest is {w.min():g}); weights "
                         f"must be >= 0 (0 leaves a row out)")
    total = w.sum()
    if not total > 0 or not np.isfinite(total):
        raise ValueError(f"{name} must have a positive, finite sum (got {total:g}); at least one "
                         f"row needs a positive weight")
    if np.all(w == w[0]):
        return None            # equal weights are the unweighted problem (bit for bit)
    return w


def check_class_weight(class_weight, labels, n_outputs):
    """Per-row factors (float64, (n,)) for ``class_weight``, or None.

    ``labels`` are the checked integer labels (None for 2-D targets, which
    ``class_weight`` cannot be used with).
    """
    if class_weight is None:
        return None
    if labels is None:
        raise ValueError("class_weight needs integer class labels (1-D y); it cannot weight "
                         "2-D targets. Pass sample_weight instead")
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be None, 'balanced' or a dict {{class: weight}}; "
                             f"got {class_weight!r}")
        counts = np.bincount(labels, minlength=n_outputs).astype(np.float64)
        present = counts > 0
        per_class = np.zeros(n_outputs)
        per_class[present] = labels.shape[0] / (np.count_nonzero(present) * counts[present])
        return per_class[labels]
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be None, 'balanced' or a dict {{class: weight}}; "
                        f"got {type(class_weight).__name__}")
    per_class = np.ones(n_outputs)
    for cls, weight in class_weight.items():
        if isinstance(cls, (bool, np.bool_)) or not isinstance(cls, numbers.Integral):
            raise TypeError(f"class_weight keys must be integer class labels; got {cls!r}")
        if not 0 <= cls < n_outputs:
            raise ValueError(f"class_weight names class {cls}, but the network has {n_outputs} "
                             f"outputs, so classes are 0..{n_outputs - 1}")
        per_class[int(cls)] = v.check_real(f"class_weight[{cls}]", weight, low=0)
    return per_class[labels]


def combine_weights(sample_weight, class_factors, n_rows):
    """The rows' weights from ``sample_weight`` (checked or raw) and ``class_factors``; None if uniform."""
    w = check_sample_weight(sample_weight, n_rows)
    if class_factors is None:
        return w
    combined = class_factors if w is None else w * class_factors
    return check_sample_weight(combined, n_rows, name="sample_weight × class_weight")


def check_dropout(dropout, sizes):
    """A tuple with one drop probability per hidden layer, each in [0, 1)."""
    n_hidden = len(sizes) - 2
    if isinstance(dropout, numbers.Real) and not isinstance(dropout, (bool, np.bool_)):
        rate = v.check_real("dropout", dropout, low=0, high=1, high_open=True)
        if rate > 0 and n_hidden == 0:
            raise ValueError(f"dropout applies to hidden layers, and sizes {list(sizes)} has none; "
                             f"use dropout=0 or add a hidden layer")
        return (rate,) * n_hidden
    try:
        if isinstance(dropout, (str, bytes)):
            raise TypeError
        rates = list(dropout)
    except TypeError:
        raise TypeError(f"dropout must be a number in [0, 1) or a sequence with one per hidden "
                        f"layer; got {dropout!r}") from None
    if len(rates) != n_hidden:
        raise ValueError(f"dropout has {len(rates)} rates but the network has {n_hidden} hidden "
                         f"layers; pass one rate per hidden layer (or a single number)")
    return tuple(v.check_real(f"dropout[{i}]", p, low=0, high=1, high_open=True)
                 for i, p in enumerate(rates))


def check_clip_norm(clip_norm):
    """``None`` or a finite float > 0."""
    if clip_norm is None:
        return None
    return v.check_real("clip_norm", clip_norm, low=0, low_open=True)
