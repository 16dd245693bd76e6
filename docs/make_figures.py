"""Draw the pictures of docs/tutorial.md (needs matplotlib).

    python docs/make_figures.py            # writes docs/learning-curves.png and docs/confusion.png
    python docs/make_figures.py --out DIR  # somewhere else

The confusion matrix uses Fashion-MNIST when it is installed
(``apt-get install dataset-fashion-mnist``, or ``$CYMLP_DATA``), else the bundled digits.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
try:
    import cymlp
except ImportError:                       # run from a checkout built in place
    sys.path.insert(0, str(HERE.parent))
    import cymlp
from cymlp.datasets import load_digits, load_fashion_mnist

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def learning_curves(path):
    """Digits, 64-64-10, cosine schedule, early stopping: the run of tutorial step 6."""
    X_train, y_train, X_test, y_test = load_digits(return_split=True, dtype="float32")
    net = cymlp.Network([64, 64, 10], activation="relu", output="softmax", dtype="float32", seed=0)
    history = net.fit(X_train, y_train, epochs=60, batch_size=32, lr=0.1, momentum=0.9,
                      lr_schedule="cosine", validation_fraction=0.2, early_stopping=True, patience=5)
    fig = history.plot()
    fig.suptitle(f"digits 64-64-10: stopped after {len(history)} epochs, best epoch "
                 f"{history.best_epoch}, test accuracy {net.score(X_test, y_test):.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def confusion(path, epochs=4):
    """Confusion matrix on the test set; Fashion-MNIST when available, else digits."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, no backend switch

    try:
        X_train, y_train, X_test, y_test = load_fashion_mnist()
        name, sizes, classes = "Fashion-MNIST", [784, 256, 128, 10], FASHION_CLASSES
    except (FileNotFoundError, OSError, ValueError):
        X_train, y_train, X_test, y_test = load_digits(return_split=True, dtype="float32")
        name, sizes, classes = "digits", [64, 64, 10], [str(d) for d in range(10)]
    net = cymlp.Network(sizes, activation="relu", output="softmax", dtype="float32", seed=0)
    net.fit(X_train, y_train, epochs=epochs, batch_size=64, lr=0.02, momentum=0.9)
    predicted = net.predict(X_test)
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (y_test, predicted), 1)

    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, matrix[i, j], ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xticks(range(10), classes, rotation=45, ha="right")
    ax.set_yticks(range(10), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(matrix) / matrix.sum()
    ax.set_title(f"{name}, {'-'.join(map(str, sizes))}, {epochs} epochs: test accuracy {accuracy:.3f}")
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path} ({name})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE), help="folder for the PNG files (default: docs/)")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("make_figures.py needs matplotlib: pip install 'cymlp[plot]'")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    learning_curves(out / "learning-curves.png")
    confusion(out / "confusion.png")


if __name__ == "__main__":
    main()
