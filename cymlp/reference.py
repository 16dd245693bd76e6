"""The NumPy reference path: backpropagation you can read next to the textbook.

This module is the teaching copy of cymlp and the oracle the compiled path is
tested against.  Every function works on a whole mini-batch at once: the rows
of ``X`` are examples, so the per-example matrix-vector products of the
textbook become matrix-matrix products (GEMM), which is the first and biggest
speed-up over a per-example Python loop.

Notation (Nielsen, *Neural Networks and Deep Learning*, chapter 2), with the
batch stacked as rows::

    z^l = a^{l-1} W^lᵀ + b^l              weighted input of layer l   (n, sizes[l])
    a^l = σ(z^l)                          activation of layer l       (n, sizes[l])

    BP1  δ^L = ∂C/∂a^L ⊙ σ'(z^L)          error of the output layer
    BP2  δ^l = (δ^{l+1} W^{l+1}) ⊙ σ'(z^l) error of a hidden layer
    BP3  ∂C/∂b^l = mean over rows of δ^l
    BP4  ∂C/∂W^l = δ^lᵀ a^{l-1} / n

``W^l`` has shape ``(sizes[l], sizes[l-1])`` (outputs × inputs), as in the
book.  Python lists are indexed from 0, so ``weights[0]`` maps the input layer
to the first hidden layer.

The derivative σ'(z) is computed from the activation a = σ(z) itself
(a(1-a) for the sigmoid, 1-a² for tanh, ...): the forward pass keeps the
activations, never the weighted inputs.
"""

import numpy as np

LEAKY_RELU_SLOPE = 0.01

HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "identity", "exp")
LOSSES = ("quadratic", "cross_entropy", "poisson")
# The output activations each loss is defined with: the cross-entropy needs
# probabilities, the Poisson deviance a positive mean (the log link: a = e^z).
OUTPUTS_OF_LOSS = {"quadratic": OUTPUT_ACTIVATIONS, "cross_entropy": ("sigmoid", "softmax"),
                   "poisson": ("exp",)}


# --------------------------------------------------------------------------
# Activations and their derivatives (expressed through the activation a)
# --------------------------------------------------------------------------

def sigmoid(z):
    """Logistic function 1 / (1 + e^-z), stable for large ``|z|`` of either sign.

    Parameters
    ----------
    z : ndarray
        Weighted inputs.

    Returns
    -------
    ndarray
        σ(z), of the shape and dtype of ``z``.
    """
    # e^-|z| never overflows; pick the algebraically equal form per sign.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def softmax(z):
    """Row-wise softmax, shifted by the row maximum so exp never overflows.

    Parameters
    ----------
    z : ndarray (n, k)
        Weighted inputs of the output layer.

    Returns
    -------
    ndarray (n, k)
        Each row a probability distribution.
    """
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def activate(name, z):
    """Apply an activation to the weighted inputs of a layer.

    Parameters
    ----------
    name : str
        One of :data:`HIDDEN_ACTIVATIONS` or :data:`OUTPUT_ACTIVATIONS`.
    z : ndarray (n, m)
        Weighted inputs.

    Returns
    -------
    ndarray (n, m)
        a = σ(z).
    """
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, z * z.dtype.type(LEAKY_RELU_SLOPE))
    if name == "softmax":
        return softmax(z)
    if name == "identity":
        return z
    if name == "exp":
        return np.exp(z)
    raise ValueError(f"unknown activation {name!r}")


def derivative(name, a):
    """σ'(z) for an elementwise activation, computed from a = σ(z).

    Parameters
    ----------
    name : str
        A hidden activation, or an output activation but softmax (not elementwise).
    a : ndarray
        Activations a = σ(z).

    Returns
    -------
    ndarray
        σ'(z), of the shape and dtype of ``a``.
    """
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "leaky_relu":
        return np.where(a > 0, a.dtype.type(1), a.dtype.type(LEAKY_RELU_SLOPE))
    if name == "identity":
        return np.ones_like(a)
    if name == "exp":
        return a                        # (e^z)' = e^z
    raise ValueError(f"{name!r} has no elementwise derivative")


# --------------------------------------------------------------------------
# Losses: value and the output error δ^L (BP1)
# --------------------------------------------------------------------------

def loss_value(loss, output, z_out, a_out, Y, sample_weight=None):
    """Mean loss over the rows of the batch (the weighted mean with ``sample_weight``).

    Parameters
    ----------
    loss : {"quadratic", "cross_entropy", "poisson"}
        The cost function C.
    output : {"sigmoid", "softmax", "identity", "exp"}
        Activation of the output layer (see :data:`OUTPUTS_OF_LOSS`).
    z_out, a_out : ndarray (n, k)
        Weighted input and activation of the output layer.  The
        cross-entropy is computed from ``z_out`` (log-sum-exp, softplus), which
        stays finite when an activation rounds to exactly 0 or 1; the Poisson
        deviance uses log a = z.
    Y : ndarray (n, k)
        Targets (one-hot rows for classification, counts >= 0 for Poisson).
    sample_weight : ndarray (n,) or None
        Non-negative row weights with a positive sum: the loss is then
        Σ_x w_x C_x / Σ_x w_x.  ``None`` is the plain mean.

    Returns
    -------
    float
        The (weighted) mean loss.
    """
    if sample_weight is not None:
        per_row = row_losses(loss, output, z_out, a_out, Y)
        return np.dot(sample_weight, per_row) / np.sum(sample_weight)
    n = Y.shape[0]
    if loss == "quadratic":
        # C = (1/n) Σ_x ½‖a(x) − y(x)‖²
        return 0.5 * np.sum((a_out - Y) ** 2) / n
    if loss == "poisson":
        # C = (1/n) Σ_x Σ_k [y_k log(y_k / a_k) − y_k + a_k]
        return np.sum(poisson_terms(z_out, a_out, Y)) / n
    if output == "softmax":
        # C = −(1/n) Σ_x Σ_k y_k log a_k, with log a_k = z_k − logsumexp(z)
        shifted = z_out - z_out.max(axis=1, keepdims=True)
        log_a = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -np.sum(Y * log_a) / n
    # sigmoid outputs: binary cross-entropy summed over the outputs,
    # −[y log σ(z) + (1−y) log(1−σ(z))] = max(z, 0) − z·y + log(1 + e^−|z|)
    return np.sum(np.maximum(z_out, 0) - z_out * Y + np.log1p(np.exp(-np.abs(z_out)))) / n


def poisson_terms(z_out, a_out, Y):
    """Half the Poisson deviance of each output, y log(y/a) − y + a (scikit-learn's).

    With the log link a = e^z, so log(y/a) = log y − z; a count of 0 costs
    a alone (0 · log 0 = 0, as ``scipy.special.xlogy``).

    Parameters
    ----------
    z_out, a_out : ndarray (n, k)
        Weighted input and activation (a = e^z) of the output layer.
    Y : ndarray (n, k)
        Counts or rates, each >= 0.

    Returns
    -------
    ndarray (n, k)
        The terms; each is >= 0, and 0 where a = y.
    """
    y_log_y = Y * np.log(np.where(Y > 0, Y, 1))
    return y_log_y - Y * z_out - Y + a_out


def row_losses(loss, output, z_out, a_out, Y):
    """C_x for every row x of the batch: the terms :func:`loss_value` averages.

    Parameters
    ----------
    loss, output, z_out, a_out, Y
        As for :func:`loss_value`.

    Returns
    -------
    ndarray (n,)
        The loss of each row.
    """
    if loss == "quadratic":
        return 0.5 * np.sum((a_out - Y) ** 2, axis=1)
    if loss == "poisson":
        return np.sum(poisson_terms(z_out, a_out, Y), axis=1)
    if output == "softmax":
        shifted = z_out - z_out.max(axis=1, keepdims=True)
        log_a = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -np.sum(Y * log_a, axis=1)
    return np.sum(np.maximum(z_out, 0) - z_out * Y + np.log1p(np.exp(-np.abs(z_out))), axis=1)


def output_error(loss, output, a_out, Y):
    """δ^L = ∂C_x/∂z^L for every row x (BP1), before averaging over the batch.

    Cross-entropy paired with its natural output (softmax or sigmoid) gives the
    famous cancellation δ = a − y: the σ' factor that slows learning with the
    quadratic cost disappears.  The Poisson deviance with its log link (a = e^z)
    cancels the same way: ∂/∂z (a − y log a) = a − y.

    Parameters
    ----------
    loss, output
        As for :func:`loss_value`.
    a_out : ndarray (n, k)
        Activation of the output layer.
    Y : ndarray (n, k)
        Targets.

    Returns
    -------
    ndarray (n, k)
        δ^L, one row per example.
    """
    residual = a_out - Y
    if loss in ("cross_entropy", "poisson"):
        return residual
    if output == "softmax":
        # The softmax Jacobian couples the outputs: δ_k = a_k (r_k − Σ_j r_j a_j).
        return a_out * (residual - np.sum(residual * a_out, axis=1, keepdims=True))
    return residual * derivative(output, a_out)


# --------------------------------------------------------------------------
# The two passes
# --------------------------------------------------------------------------

def feedforward(weights, biases, hidden, output, X, masks=None):
    """Activations of every layer for a batch.

    Parameters
    ----------
    weights, biases : list of ndarray
        ``weights[l]`` (sizes[l+1], sizes[l]) and ``biases[l]`` (sizes[l+1],).
    hidden, output : str
        Activations of the hidden layers and of the output layer.
    X : ndarray (n, sizes[0])
        The batch, one example per row.
    masks : list of ndarray or None
        Training with dropout only: one (n, sizes[l]) multiplier per hidden
        layer, 0 for a dropped unit and 1/(1-p) for a kept one (see
        :func:`dropout_masks`); the next layer then sees ã^l = a^l ⊙ m^l.

    Returns
    -------
    activations : list of ndarray
        ``activations[0]`` is ``X`` itself, ``activations[-1]`` the network's
        output; the unmasked a^l, from which σ' is computed.
    z_out : ndarray (n, sizes[-1])
        The output layer's weighted input (needed by the cross-entropy).
    """
    activations = [X]
    z = X
    layer_input = X
    for l, (W, b) in enumerate(zip(weights, biases)):
        z = layer_input @ W.T + b                       # z^l = ã^{l-1} W^lᵀ + b^l
        name = output if l == len(weights) - 1 else hidden
        activations.append(activate(name, z))           # a^l = σ(z^l)
        layer_input = activations[-1]
        if masks is not None and l < len(weights) - 1:
            layer_input = layer_input * masks[l]        # ã^l = a^l ⊙ m^l (dropout)
    return activations, z


def backprop(weights, biases, hidden, output, loss, X, Y, sample_weight=None, masks=None):
    """Gradient of the mean loss over the rows of ``X``.

    Parameters
    ----------
    weights, biases, hidden, output
        As for :func:`feedforward`.
    loss : {"quadratic", "cross_entropy", "poisson"}
        The cost function C.
    X : ndarray (n, sizes[0])
        The batch, one example per row.
    Y : ndarray (n, sizes[-1])
        Its targets (one-hot rows for classification).
    sample_weight : ndarray (n,) or None
        The cost is then the weighted mean Σ w_x C_x / Σ w_x, so each row's
        error enters BP3/BP4 scaled by w_x / Σ w instead of 1/n.
    masks : list of ndarray or None
        Dropout multipliers (see :func:`feedforward`): a dropped unit passes
        no signal forward and no error backward, so BP2 gains a factor m^l
        and BP4 uses the masked activations ã^l.

    Returns
    -------
    grads_w, grads_b : list of ndarray
        Shaped like ``weights`` and ``biases``.
    cost : float
        The (weighted) mean loss.
    output : ndarray (n, sizes[-1])
        The output activations.
    """
    n = X.shape[0]
    activations, z_out = feedforward(weights, biases, hidden, output, X, masks)
    grads_w = [None] * len(weights)
    grads_b = [None] * len(biases)

    delta = output_error(loss, output, activations[-1], Y)              # BP1
    if sample_weight is not None:
        # n / Σw is exactly 1 for all-ones weights, so they reproduce the unweighted bits
        delta = delta * (sample_weight * (n / np.sum(sample_weight)))[:, None].astype(delta.dtype)
    for l in range(len(weights) - 1, -1, -1):
        layer_input = activations[l]
        if masks is not None and l > 0:
            layer_input = layer_input * masks[l - 1]                    # ã^{l}
        grads_b[l] = delta.sum(axis=0) / n                              # BP3
        grads_w[l] = delta.T @ layer_input / n                          # BP4
        if l > 0:
            delta = (delta @ weights[l]) * derivative(hidden, activations[l])  # BP2
            if masks is not None:
                delta = delta * masks[l - 1]
    cost = loss_value(loss, output, z_out, activations[-1], Y, sample_weight)
    return grads_w, grads_b, cost, activations[-1]


# --------------------------------------------------------------------------
# Dropout masks from a counter-based generator
# --------------------------------------------------------------------------
# A dropout mask must be the same on both paths and for every thread count,
# so it is not drawn from a stream (whose state depends on who drew what
# before) but hashed from its coordinates: unit j of row r of hidden layer l
# at optimizer step t of epoch e under seed s keeps its value when
# u(s, e, t, l, r, j) >= p, where u is a splitmix64 hash mapped to [0, 1).
# The compiled path evaluates the same hash in C (cymlp/_random.pxd).

_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def mix64(x):
    """splitmix64's finaliser: a bijection of uint64 that scrambles every bit.

    Parameters
    ----------
    x : int or ndarray
        Values taken as uint64.

    Returns
    -------
    ndarray of uint64
        The scrambled values.
    """
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):             # multiplication modulo 2**64 is the point
        x = (x ^ (x >> np.uint64(30))) * _MIX1
        x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def dropout_key(seed, epoch, step, layer):
    """The hash of a mask's coordinates above the (row, unit) grid.

    Parameters
    ----------
    seed, epoch, step, layer : int
        The training seed, epoch, optimizer step and hidden layer (from 0).

    Returns
    -------
    numpy.uint64
        The key that :func:`dropout_masks` combines with each (row, unit).
    """
    key = mix64(np.uint64(seed))
    for part in (epoch, step, layer):
        key = mix64(key ^ np.uint64(part))
    return key


def dropout_masks(seed, epoch, step, sizes, n_rows, rates, dtype):
    """Inverted-dropout multipliers for each hidden layer of one mini-batch.

    Parameters
    ----------
    seed, epoch, step : int
        The coordinates of the step (see the comment above).
    sizes : sequence of int
        The network's layer sizes.
    n_rows : int
        Rows in the mini-batch.
    rates : sequence of float
        ``rates[l]``: the drop probability of hidden layer ``l + 1``.
    dtype : numpy dtype
        The multipliers' dtype.

    Returns
    -------
    list of ndarray
        One (n_rows, sizes[l + 1]) array per hidden layer holding 0 (dropped)
        or 1/(1-p) (kept); a layer with p = 0 gets all ones.
    """
    masks = []
    rows = np.arange(n_rows, dtype=np.uint64)[:, None] << np.uint64(32)
    for l, p in enumerate(rates):
        if p == 0:
            masks.append(np.ones((n_rows, sizes[l + 1]), dtype=dtype))
            continue
        units = np.arange(sizes[l + 1], dtype=np.uint64)[None, :]
        bits = mix64(dropout_key(seed, epoch, step, l) ^ (rows | units))
        uniform = (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        masks.append(np.where(uniform >= p, 1.0 / (1.0 - p), 0.0).astype(dtype))
    return masks


def clip_by_global_norm(grads, max_norm):
    """Scale the gradient arrays in place so that their joint L2 norm is at most ``max_norm``.

    ``g ← g · min(1, max_norm / ‖g‖)``.

    Parameters
    ----------
    grads : list of ndarray
        The gradient, one array per parameter; changed in place.
    max_norm : float
        The largest global norm left.

    Returns
    -------
    float
        The norm before clipping.
    """
    norm = float(np.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads)))
    if norm > max_norm:
        scale = max_norm / norm
        for g in grads:
            g *= g.dtype.type(scale)
    return norm


# --------------------------------------------------------------------------
# Optimizers: one update of the parameters from the mean gradient
# --------------------------------------------------------------------------

def sgd_update(params, grads, velocities, lr, momentum=0.0, nesterov=False,
               decays=None, weight_decay=0.0):
    """One SGD step, in place, on lists of parameter arrays.

    ``decays[i]`` says whether ``params[i]`` is a weight matrix (weight decay
    applies) or a bias (it does not).  With weight decay λ, g ← g + λ·W; then

    - plain:    W ← W − lr·g
    - momentum: v ← μ·v + g,  W ← W − lr·v
    - Nesterov: v ← μ·v + g,  W ← W − lr·(g + μ·v)

    Parameters
    ----------
    params, grads : list of ndarray
        The parameters (changed in place) and their mean gradients.
    velocities : list of ndarray or None
        The momentum buffers v, changed in place (unused without momentum).
    lr : float
        Learning rate.
    momentum : float
        μ in [0, 1).
    nesterov : bool
        Nesterov's form of the step.
    decays : list of bool or None
        Which parameters weight decay applies to (needed with ``weight_decay``).
    weight_decay : float
        λ >= 0.
    """
    for i, (p, g) in enumerate(zip(params, grads)):
        if weight_decay and decays[i]:
            g = g + weight_decay * p
        if momentum == 0:
            p -= lr * g
            continue
        v = velocities[i]
        v *= momentum
        v += g
        p -= lr * (g + momentum * v) if nesterov else lr * v


def adam_update(params, grads, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                decays=None, weight_decay=0.0):
    """One Adam step (Kingma & Ba 2015), in place.

    Weight decay is the classic L2 form (added to the gradient), as for SGD.

    Parameters
    ----------
    params, grads : list of ndarray
        The parameters (changed in place) and their mean gradients.
    m, v : list of ndarray
        The first and second moment buffers, changed in place.
    step : int
        Adam's t, counted from 1 (the bias corrections 1 − β^t).
    lr : float
        Learning rate.
    beta1, beta2, eps : float
        Adam's constants.
    decays : list of bool or None
        Which parameters weight decay applies to (needed with ``weight_decay``).
    weight_decay : float
        λ >= 0.
    """
    for i, (p, g) in enumerate(zip(params, grads)):
        if weight_decay and decays[i]:
            g = g + weight_decay * p
        m[i] *= beta1
        m[i] += (1 - beta1) * g
        v[i] *= beta2
        v[i] += (1 - beta2) * g * g
        m_hat = m[i] / (1 - beta1 ** step)
        v_hat = v[i] / (1 - beta2 ** step)
        p -= lr * m_hat / (np.sqrt(v_hat) + eps)
