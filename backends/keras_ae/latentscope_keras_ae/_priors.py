"""What the learned priors (``flow``, ``diffusion``) share: the whitened PCA frame, the
held-out split with early stopping, seeded Keras networks, and saving the weights as
plain arrays (no pickle, no ``.keras`` file).

Keras is imported only inside the functions that fit or sample, so the entry points of
the ``latentscope.samplers`` group load without it. Everything is written with
``keras.ops``: TensorFlow, JAX and PyTorch all run it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
from latentscope._validation import check_positive
from latentscope.exceptions import InvalidParameterError, NotFittedError
from latentscope.samplers import Sampler
from latentscope.samplers._data import is_data, subsample

__all__ = ["LearnedPrior", "auto_hidden"]


def auto_hidden(hidden: Any, n_train: int, cap: int) -> int:
    """The network width: ``hidden`` itself, or for ``"auto"`` the power of two nearest to
    ``n_train / 32``, between 32 and ``cap`` (a 2,700-row fit gets 64, 200,000 rows ``cap``).

    A coupling MLP of width w on D whitened axes has about ``w^2 + 1.5 w D`` weights; with
    a few thousand rows a width of 128 or more overfits within 10-20 epochs.
    """
    if not (isinstance(hidden, str) and hidden == "auto"):
        return int(hidden)
    w = 2 ** int(round(np.log2(max(n_train, 1) / 32.0)))
    return int(min(max(w, 32), cap))


class LearnedPrior(Sampler):
    """Base of the samplers that train a small Keras network on the whitened latents.

    The fit rows (``max_samples`` of them, drawn with the fit ``rng``) are centred and
    whitened in their PCA frame (``y = (z - mean) V^T / sqrt(lambda)``, axes with
    variance below 1e-12 of the largest dropped), split into training and held-out
    rows (``val_fraction``), and the network is trained for at most ``epochs`` passes;
    training stops when the held-out loss has not improved for ``patience`` epochs, and
    the weights of the best epoch are kept. Samples are mapped back with
    ``z = mean + (y sqrt(lambda)) V``.
    """

    _array_attrs = ("mean_", "components_", "scales_", "weights_")
    _scalar_attrs = ("weight_shapes_", "history_", "best_epoch_", "n_fit_rows_", "fit_seconds_", "keras_backend_",
                     "hidden_")
    #: The widest network ``hidden="auto"`` picks (subclasses override).
    _max_hidden = 128

    # subclasses: _build(dim, seed) -> keras model; _epoch_data(Y, rng) -> (inputs, targets);
    # _generate(model, n, rng) -> whitened samples (n, dim)

    def _check_common(self, owner: str) -> None:
        for name in ("epochs", "batch_size", "patience"):
            check_positive(getattr(self, name), name, owner=owner, integer=True)
        if isinstance(self.hidden, str) and self.hidden != "auto":
            raise InvalidParameterError(f'{owner}: hidden must be a positive int or "auto"; got {self.hidden!r}.')
        if not isinstance(self.hidden, str):
            check_positive(self.hidden, "hidden", owner=owner, integer=True)
        check_positive(self.learning_rate, "learning_rate", owner=owner)
        wd = self.weight_decay
        if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not 0.0 <= float(wd) < 1.0:
            raise InvalidParameterError(f"{owner}: weight_decay must be a number in [0, 1); got {wd!r}.")
        dr = self.dropout
        if isinstance(dr, bool) or not isinstance(dr, (int, float)) or not 0.0 <= float(dr) < 1.0:
            raise InvalidParameterError(f"{owner}: dropout must be a number in [0, 1); got {dr!r}.")
        check_positive(self.temperature, "temperature", owner=owner)
        if self.max_samples is not None:
            check_positive(self.max_samples, "max_samples", owner=owner, integer=True)
        if not (isinstance(self.val_fraction, (int, float)) and 0.0 < float(self.val_fraction) < 0.5):
            raise InvalidParameterError(f"{owner}: val_fraction must be a number in (0, 0.5); got {self.val_fraction!r}.")

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        owner = type(self).__name__
        self._check_params(owner)
        if not is_data(source):
            raise InvalidParameterError(f"{owner}.fit: the prior is trained on z-points; pass a store or an array.")
        start = time.perf_counter()
        X = subsample(source, self.max_samples, rng)
        if X.shape[0] < 20:
            raise InvalidParameterError(f"{owner}.fit: needs at least 20 z-points; got {X.shape[0]}.")
        mean = X.mean(axis=0)
        if pca is not None:
            mean, axes, lam = np.asarray(pca.mean_, float), np.asarray(pca.components_, float), np.asarray(pca.explained_variance_, float)
        else:
            lam, vecs = np.linalg.eigh(np.cov(X - mean, rowvar=False))
            order = np.argsort(lam)[::-1]
            lam, axes = lam[order], vecs[:, order].T
        keep = lam > 1e-12 * max(float(lam.max()), 1e-300)
        self.mean_, self.components_, self.scales_ = mean, axes[keep], np.sqrt(lam[keep])
        Y = ((X - mean) @ self.components_.T / self.scales_).astype(np.float32)
        perm = rng.permutation(Y.shape[0])
        n_val = max(1, int(round(float(self.val_fraction) * Y.shape[0])))
        Yval, Ytr = Y[perm[:n_val]], Y[perm[n_val:]]
        seed = int(rng.integers(2**31 - 1))
        self.hidden_ = auto_hidden(self.hidden, Ytr.shape[0], self._max_hidden)
        model = self._build(Y.shape[1], seed)
        self.history_ = self._train(model, Ytr, Yval, rng, owner)
        self._after_fit(Y)
        self._model = model
        self.weights_ = np.concatenate([np.ravel(w).astype(np.float32) for w in model.get_weights()])
        self.weight_shapes_ = [list(np.shape(w)) for w in model.get_weights()]
        self.n_fit_rows_ = int(Ytr.shape[0])
        self.z_dim_ = int(X.shape[1])
        self.fit_seconds_ = float(time.perf_counter() - start)
        import keras

        self.keras_backend_ = str(keras.backend.backend())

    def _check_params(self, owner: str) -> None:
        self._check_common(owner)

    def _after_fit(self, Y: np.ndarray) -> None:
        """Fitted scalars that depend on the whitened fit rows (override if needed)."""

    def _bars(self) -> bool:
        if self.progress is None:
            return sys.stderr.isatty() and os.environ.get("LATENTSCOPE_NO_PROGRESS", "") in ("", "0")
        return bool(self.progress)

    def _train(self, model: Any, Ytr: np.ndarray, Yval: np.ndarray, rng: np.random.Generator, owner: str) -> dict[str, Any]:
        import keras
        from tqdm.auto import tqdm

        lr, wd = float(self.learning_rate), float(self.weight_decay)
        opt = (keras.optimizers.AdamW(learning_rate=lr, weight_decay=wd) if wd > 0
               else keras.optimizers.Adam(learning_rate=lr))
        model.compile(optimizer=opt, loss=self._loss())
        val_rng = np.random.default_rng(rng.integers(2**63 - 1))
        # fixed held-out inputs (at least 8,192 rows): a comparable loss every epoch
        xv, yv = self._epoch_data(Yval, val_rng, min_rows=8192)
        bs = int(min(self.batch_size, Ytr.shape[0]))
        hist: dict[str, list[float]] = {"loss": [], "val_loss": []}
        best, best_epoch, best_w, wait = np.inf, 0, model.get_weights(), 0
        with tqdm(total=int(self.epochs), desc=f"{self.name}: training", unit="epoch", file=sys.stderr,
                  disable=not self._bars(), leave=False) as bar:
            for epoch in range(int(self.epochs)):
                xt, yt = self._epoch_data(Ytr[rng.permutation(Ytr.shape[0])], rng)
                h = model.fit(xt, yt, batch_size=bs, epochs=1, shuffle=False, verbose=0)
                loss = float(h.history["loss"][-1])
                val = float(model.evaluate(xv, yv, batch_size=max(bs, 1024), verbose=0))
                hist["loss"].append(loss)
                hist["val_loss"].append(val)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", val=f"{val:.4g}")
                if not np.isfinite(loss):
                    raise InvalidParameterError(f"{owner}.fit: the training loss became {loss} at epoch {epoch + 1}; "
                                                "lower learning_rate.")
                if val < best - 1e-4 * abs(best if np.isfinite(best) else 0.0):
                    best, best_epoch, best_w, wait = val, epoch + 1, model.get_weights(), 0
                else:
                    wait += 1
                    if wait >= int(self.patience):
                        break
        model.set_weights(best_w)
        self.best_epoch_ = int(best_epoch)
        return {"loss": hist["loss"], "val_loss": hist["val_loss"], "epochs_run": len(hist["loss"]),
                "stopped_early": len(hist["loss"]) < int(self.epochs)}

    # -- the network from the saved arrays -----------------------------------------------
    def _network(self) -> Any:
        model = getattr(self, "_model", None)
        if model is None:
            if getattr(self, "weights_", None) is None:
                raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(store) first.")
            model = self._build(int(self.components_.shape[0]), 0)
            flat, out, at = np.asarray(self.weights_, np.float32), [], 0
            for shape in self.weight_shapes_:
                size = int(np.prod(shape)) if len(shape) else 1
                out.append(flat[at:at + size].reshape(shape))
                at += size
            model.set_weights(out)
            self._model = model
        return model

    def _restore(self) -> None:
        self._model = None
        if getattr(self, "hidden_", None) is None:  # saved before hidden_ existed
            self.hidden_ = int(self.hidden)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        Y = self._generate(self._network(), n, rng) if n else np.empty((0, self.components_.shape[0]))
        return self.mean_ + (np.asarray(Y, np.float64) * self.scales_) @ self.components_

    def __getstate__(self) -> dict[str, Any]:  # clone/copy never carry a live network
        state = dict(self.__dict__)
        state.pop("_model", None)
        return state
