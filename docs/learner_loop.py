# docs/learner_loop.py: a sigmoid network trained one example at a time, written
# the way a learner first writes it (column vectors, lists of W and b, a Python
# loop over the examples of a batch).  It keeps two bugs that such code often has;
# the flags turn each one off.  docs/tutorial.md, step 1, explains and catches them.
import numpy as np
from scipy.special import expit


def sigma(z):
    return expit(z)


def sigma_prime(z):
    u = expit(z)
    return u - u * u


def init_network(layer_size, rng):
    """W[l] has shape (layer_size[l+1], layer_size[l]); b[l] is a column vector."""
    W = [rng.standard_normal((layer_size[l + 1], layer_size[l])) / np.sqrt(layer_size[l])
         for l in range(len(layer_size) - 1)]
    b = [np.zeros((layer_size[l + 1], 1)) for l in range(len(layer_size) - 1)]
    return W, b


def ground_truth(L, n_outputs):
    """One-hot rows for the labels L: one row per label."""
    images = len(L)                      # the number of examples is read from L
    y = np.zeros((images, n_outputs))
    for i in range(images):
        y[i, L[i]] = 1.0
    return y


def batch_gradient(W, b, I, y, batch, add_last_twice=True):
    """Mean gradient of C = ½‖a − y‖² over the examples in ``batch``, one at a time."""
    n_layers = len(W)
    dW = [np.zeros_like(w) for w in W]
    db = [np.zeros_like(c) for c in b]
    for i in batch:
        # feedforward, one example as a column vector
        a = [I[i].reshape(-1, 1)]
        z = []
        for l in range(n_layers):
            z.append(W[l] @ a[l] + b[l])
            a.append(sigma(z[l]))
        # backpropagation
        delta = (a[-1] - y[i].reshape(-1, 1)) * sigma_prime(z[-1])   # BP1
        dW[-1] += delta @ a[-2].T                                      # BP4
        if add_last_twice:
            dW[-1] += delta @ a[-2].T        # BUG 1: the same line a second time
        db[-1] += delta                                                # BP3
        for l in reversed(range(n_layers - 1)):
            delta = (W[l + 1].T @ delta) * sigma_prime(z[l])           # BP2
            dW[l] += delta @ a[l].T                                    # BP4
            db[l] += delta                                             # BP3
    return [g / len(batch) for g in dW], [g / len(batch) for g in db]


def train(W, b, I, L, batch_size, eta, steps, rng, add_last_twice=True):
    """Plain SGD on random batches; returns nothing, updates W and b in place."""
    y = ground_truth(L, W[-1].shape[0])
    images = len(L)                      # BUG 2 bites here when len(L) != len(I)
    for _ in range(steps):
        batch = rng.integers(0, images, batch_size)
        dW, db = batch_gradient(W, b, I, y, batch, add_last_twice)
        for l in range(len(W)):
            W[l] -= eta * dW[l]
            b[l] -= eta * db[l]
