"""SpectralMonitor: the spectral quantities of a network measured every ``k`` training steps on a
fixed probe batch, for any training loop.

Use it in your own loop (call :meth:`SpectralMonitor.step` once per optimiser step), in
:func:`spectral_lab.train` (``callbacks=[monitor]``), in PyTorch Lightning
(:mod:`spectral_lab.monitor.lightning_callback`), in the Hugging Face ``Trainer``
(:mod:`spectral_lab.monitor.hf_callback`), and log to TensorBoard (``writer=``,
:mod:`spectral_lab.monitor.tensorboard`). Each is a thin adapter over this one class.

What one measurement records (the keys of a record; see :class:`SpectralMonitor`):

* ``"sharpness"``: ``lambda_max(H)`` of the loss Hessian on the probe (the edge of stability:
  gradient descent with step ``eta`` is stable on the local quadratic iff it is below
  ``2/eta``, recorded as ``"two_over_lr"``; Cohen et al. 2021, "Gradient Descent on Neural
  Networks Typically Occurs at the Edge of Stability");
* ``"preconditioned_sharpness"`` (Adam/AdamW): ``lambda_max(P^{-1} H)`` with Adam's own
  preconditioner, beside its threshold ``"preconditioned_threshold"`` ``(2 + 2 beta_1) /
  ((1 - beta_1) eta)`` (Cohen et al. 2022, "Adaptive Gradient Methods at the Edge of Stability");
* ``"ntk_top"``, ``"ntk_cond"``, ``"ntk_drift"``: the NTK on the probe's first
  ``num_ntk_samples`` samples, its top eigenvalue, condition number and relative drift
  ``||K_t - K_0||_F / ||K_0||_F`` from the first measurement;
* ``"jac_entropy"``, ``"jac_top"``: the input Jacobian's spectral entropy and ``sigma_1``,
  averaged over the first ``num_jacobian_samples`` probe samples;
* ``"stable_rank/<layer>"``, ``"alpha/<layer>"``: each weight matrix's stable rank and power-law
  exponent;
* ``"probe_loss"`` (always; one forward pass), ``"loss"`` (when given), ``"products"`` (operator
  products spent: Hessian-vector products, plus ``n`` for the NTK Gram on ``n`` samples),
  ``"seconds"`` (and ``"seconds/<quantity>"``), ``"diverging"``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._losses import scalar_loss
from .._random import resolve_generator
from ..distributed import guarded, resolve_group
from ..prepared import Prepared, prepare
from . import measure as _m

__all__ = ["QUANTITIES", "DivergenceWarning", "SpectralMonitor"]

QUANTITIES = ("sharpness", "ntk", "input_jacobian", "layers")
"""What a monitor can measure; ``quantities=`` takes any subset."""


class DivergenceWarning(RuntimeWarning):
    """Warned once by a :class:`SpectralMonitor` when training starts to diverge."""


def _check_probe(probe) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(probe, dict):  # a Hugging Face style batch
        keys = [k for k in ("x", "input", "inputs", "pixel_values", "input_ids") if k in probe]
        ys = [k for k in ("y", "labels", "label") if k in probe]
        if keys and ys:
            probe = (probe[keys[0]], probe[ys[0]])
    if not (isinstance(probe, (tuple, list)) and len(probe) == 2):
        raise TypeError(
            "probe must be an (x, y) pair of tensors (e.g. one batch of your data: "
            f"probe=(x[:256], y[:256])), got {type(probe).__name__}"
        )
    x, y = probe
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("probe must be an (x, y) pair of tensors; the loss needs the labels y")
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(
            f"probe's x and y must be non-empty and of one length, got {len(x)} and {len(y)}"
        )
    return x.detach(), y.detach()


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class SpectralMonitor:
    """Measure the spectra of training every ``every`` steps on a fixed probe batch.

    Args:
        probe: an ``(x, y)`` pair of tensors (one batch; a dict batch with ``"x"``/``"input_ids"``
            /``"pixel_values"`` and ``"y"``/``"labels"`` is read as such). Kept fixed, so the
            measurements of different steps are comparable.
        loss: ``"cross_entropy"`` (default), ``"mse"`` (``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``,
            the loss :func:`~spectral_lab.train` minimises) or a callable returning the batch mean:
            the loss whose Hessian is measured.
        every: measure when the step count is a multiple of ``every`` (default 50).
        quantities: any of ``"sharpness"``, ``"ntk"``, ``"input_jacobian"``, ``"layers"``.
        lr: the step size ``eta`` for ``2/eta``; default the optimiser's first group ``lr``.
        seed: the seed of the probe subset and of Lanczos' first start vector.
        max_iter: Lanczos' product budget per measurement (default 100).
        tol: Lanczos' relative residual ``||H u - theta u|| <= tol |theta|`` (default 1e-3; the
            sharpness comes out to about 1e-6 relative on the course's CNN). Not looser: at 1e-2
            a start vector close to the *second* eigenvector (the previous top one, after the
            top two swapped) met the test on the second eigenvalue, 9 % below the top
            (``benchmarks/bench_monitor.py`` checks each run against a tight reference).
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (or anything with ``add_scalar``
            and ``add_histogram``): every record is logged to it
            (:func:`spectral_lab.monitor.tensorboard.log_record`).
        probe_size: keep a seeded random subset of this many probe samples (default None: the
            whole probe). The probe's size sets the cost: on the course's CNN a probe of 64
            images keeps the monitor near 10 % of minibatch training at ``every=50``
            (``benchmarks/bench_monitor.py``).
        num_ntk_samples: probe samples of the NTK Gram (default 16; the first ones, after a
            seeded shuffle of the probe).
        num_jacobian_samples: probe samples of the input Jacobian (default 8).
        patience: how many consecutive rises of the probe loss the divergence rule needs.
        process_group: under ``torch.distributed`` (``DistributedDataParallel``), ``probe`` is this
            rank's shard of the probe and every quantity is that of the concatenated probe (rank
            0's shard first): ``None`` (default) the default group when ``torch.distributed`` is
            initialised with more than one process, ``False`` this rank alone, or a
            ``ProcessGroup``. Resolved once, at the first measurement (:mod:`spectral_lab.distributed`).

    **Under DistributedDataParallel** (pass the DDP model or its ``.module``; it is unwrapped):
    the sharpness and preconditioned sharpness run on the distributed Hessian operator (each rank
    its shard weighted by ``n_r / N``, one all-reduce per product; the warm start is replicated),
    the NTK's samples are gathered once and its Gram computed replicated on every rank, each rank
    computes the input Jacobians of its own samples and the per-sample values are gathered,
    layer statistics are read from the replicated weights, ``"probe_loss"`` is the mean over the
    concatenated probe and ``"loss"`` the mean of the ranks' given losses. The seeded subsets
    (``probe_size``, the NTK's and Jacobian's samples) are drawn over the concatenated probe as
    one process draws them, so every rank's record equals one process's on the whole probe (the
    seconds aside) and :attr:`history` is the same on every rank; only rank 0 writes to
    ``writer``, warns and redraws the live figure. Weights that differ between ranks (a model not
    wrapped in DDP) are refused on every rank; a rank that fails makes every rank raise.

    Warm start: each Lanczos run starts from the previous measurement's top eigenvector, so a
    measurement after small steps costs few products (``"sharpness_products"``).

    **Divergence rule** (``"diverging"``): true when the probe loss is not finite, or when it rose
    at each of the last ``patience`` measurements (default 2) while the sharpness is above the
    stability threshold (``2/eta``; for Adam, the preconditioned sharpness above
    ``(2 + 2 beta_1)/((1 - beta_1) eta)``); without a known ``eta``, the rises alone. The first
    time it holds, a :class:`DivergenceWarning` is issued.

    Memory: the probe's Hessian operator is built once and kept (its kept autograd graph, about
    one training step's graph on the probe, is rebuilt after each optimiser step), and the first
    NTK Gram (``K_0``).

    Cost per measurement (the defaults): ~10-40 Hessian-vector products on the probe, an NTK Gram
    on 16 samples (``16 C`` backward passes), ``C`` backward passes for 8 input Jacobians, an SVD
    per layer. Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example: a linear least-squares model has sharpness ``lambda_max(X^T X / n)`` throughout.
        >>> lin = torch.nn.Linear(3, 1, bias=False).double()
        >>> x, y = torch.randn(16, 3, dtype=torch.float64), torch.zeros(16, 1, dtype=torch.float64)
        >>> opt = torch.optim.SGD(lin.parameters(), lr=0.1)
        >>> mon = SpectralMonitor((x, y), loss="mse", every=5, quantities=("sharpness",), tol=1e-8)
        >>> for t in range(11):
        ...     loss = 0.5 * (lin(x) ** 2).sum(1).mean()
        ...     rec = mon.step(lin, opt, loss=loss)
        ...     opt.zero_grad(); loss.backward(); opt.step()
        >>> lam = float(torch.linalg.eigvalsh(x.T @ x / 16)[-1])
        >>> [h["step"] for h in mon.history], [round(h["sharpness"] / lam, 6) for h in mon.history]
        ([0, 5, 10], [1.0, 1.0, 1.0])
        >>> mon.history[0]["two_over_lr"], any(h["diverging"] for h in mon.history)
        (20.0, False)
    """

    def __init__(
        self,
        probe,
        *,
        loss="cross_entropy",
        every: int = 50,
        quantities: Sequence[str] = QUANTITIES,
        lr: float | None = None,
        seed: int = 0,
        max_iter: int | None = None,
        tol: float = 1e-3,
        writer=None,
        probe_size: int | None = None,
        num_ntk_samples: int = 16,
        num_jacobian_samples: int = 8,
        patience: int = 2,
        process_group: Any = None,
    ) -> None:
        self.x, self.y = _check_probe(probe)
        self._raw = (self.x, self.y)  # this rank's whole shard (a process group's layout needs it)
        self.every = _positive_int(every, "every")
        if isinstance(quantities, str):
            quantities = (quantities,)
        bad = [q for q in quantities if q not in QUANTITIES]
        if bad:
            raise ValueError(f"quantities must be among {QUANTITIES}, got {bad}")
        self.quantities = tuple(quantities)
        if lr is not None and not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number or None, got {lr!r}")
        self.lr = None if lr is None else float(lr)
        if not (isinstance(tol, (int, float)) and 0 < tol < 1):
            raise ValueError(f"tol must be in (0, 1), got {tol!r}")
        self.tol = float(tol)
        if max_iter is not None:
            _positive_int(max_iter, "max_iter")
        self.max_iter = max_iter
        self.loss = loss
        self.seed = seed
        self.writer = writer
        self.patience = _positive_int(patience, "patience")
        self.process_group = process_group
        self._group, self._resolved, self._shard, self.rank = None, False, None, 0
        self._sizes = (probe_size, num_ntk_samples, num_jacobian_samples)
        order = torch.randperm(len(self.x), generator=resolve_generator(seed=seed))
        if probe_size is not None:
            order = order[: _positive_int(probe_size, "probe_size")]
            self.x, self.y = self.x[order], self.y[order]
            order = torch.arange(len(self.x))
        n = len(self.x)
        self.ntk_index = order[: min(n, _positive_int(num_ntk_samples, "num_ntk_samples"))]
        self.jac_index = order[
            : min(n, _positive_int(num_jacobian_samples, "num_jacobian_samples"))
        ]
        self.history: list[dict] = []
        self.spectra: list[dict] = []  # per record: the spectra behind it (for histograms)
        self.count = 0
        self.warned = False
        self._prep: Prepared | None = None
        self._v0: torch.Tensor | None = None
        self._v0_pre: torch.Tensor | None = None
        self._K0: torch.Tensor | None = None
        self._H = None
        self._live = None

    @property
    def probe(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The probe batch ``(x, y)`` every quantity is measured on (the kept subset; under a
        process group, this rank's part of it once the first measurement has run)."""
        return self.x, self.y

    def __repr__(self) -> str:
        return (
            f"SpectralMonitor(every={self.every}, quantities={self.quantities}, "
            f"probe={len(self.x)} samples, records={len(self.history)})"
        )

    # --- the training-loop side ------------------------------------------------------------------

    def step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        loss: float | torch.Tensor | None = None,
        step: int | None = None,
    ) -> dict | None:
        """Count one training step; measure when the count is a multiple of ``every``.

        Call it once per optimiser step. The ``t``-th call (``t = 0, 1, ...``) is step ``t``
        unless ``step=`` says otherwise (the adapters pass the trainer's global step). Called
        before ``optimizer.step()``, step ``t`` measures the parameters after ``t`` updates and
        ``loss`` is their training loss. Returns the record when it measured, else None.
        """
        t = self.count if step is None else int(step)
        self.count = t + 1
        if t % self.every != 0 or (self.history and self.history[-1]["step"] == t):
            return None
        return self.measure(model, optimizer, loss=loss, step=t)

    # the sl.train callback protocol (spectral_lab.training.TrainCallback)
    def on_train_begin(self, model: nn.Module, optimizer=None) -> None:
        """Measure the starting point (step 0) unless it was measured already."""
        if not self.history:
            self.measure(model, optimizer, step=self.count)
            self.count += 1

    def on_step_end(self, model: nn.Module, optimizer, step: int, loss: float) -> None:
        """After optimiser step number ``step`` (1-based): :meth:`step` with that count."""
        self.step(model, optimizer, loss=loss, step=step)

    # --- one measurement -------------------------------------------------------------------------

    def _resolve(self) -> Any:
        """The process group, resolved once, at the first measurement (a trainer initialises
        ``torch.distributed`` after the monitor is built); under a group, this rank's part of the
        concatenated probe (:class:`~spectral_lab.monitor._sharded.ShardedProbe`)."""
        if not self._resolved:
            self._group = resolve_group(self.process_group)
            self._resolved = True
            if self._group is not None:
                from ._sharded import ShardedProbe

                self._shard = ShardedProbe(self._group, *self._raw, self.seed, *self._sizes)
                self.x, self.y, self.rank = self._shard.x, self._shard.y, self._shard.rank
        return self._group

    def _prepared(self, model: nn.Module) -> Prepared:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module  # the replicated model; DDP's forward would synchronise
        if isinstance(model, Prepared):
            return prepare(model, self._raw, loss=self.loss)
        prep = self._prep
        if prep is None or prep.source is not model or "precision" in prep.notes:
            prep = prepare(model, self._raw, loss=self.loss)
            self._prep = prep
        return prep

    def _hessian(self, prep: Prepared, probe):
        """The probe's Hessian operator, built once per prepared model and kept: an in-place
        update of the parameters (an optimiser step) rebuilds its kept graph at the next product
        (:func:`~spectral_lab.hessian.hessian_operator`), so the route is chosen only once."""
        if self._H is None or self._H[0] is not prep:
            pg = False if self._group is None else self._group
            self._H = (prep, _m.hessian(prep, probe, process_group=pg))
        return self._H[1]

    def measure(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        loss: float | torch.Tensor | None = None,
        step: int | None = None,
    ) -> dict:
        """Measure now and append the record to :attr:`history` (``step`` defaults to the current
        count). Returns the record."""
        start = time.perf_counter()
        group = self._resolve()
        prep = self._prepared(model)
        lr = self.lr
        if lr is None and optimizer is not None:
            lr = float(optimizer.param_groups[0]["lr"])
            lr = lr if lr > 0 else None  # a schedule at zero: no threshold to compare with
        x = self.x.to(prep.device)  # raw: every call casts it (token ids stay integers)
        y = self.y.to(prep.device)
        probe = (x, y)
        g = resolve_generator(seed=self.seed, device=prep.device)
        rec: dict = {"step": self.count if step is None else int(step)}
        spectra: dict = {"step": rec["step"]}
        products = 0
        with torch.inference_mode(False), torch.enable_grad():  # whatever the caller's mode
            if loss is not None:
                loss = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
            rec["probe_loss"], loss = self._probe_loss(prep, x, y, loss, group)
            if loss is not None:
                rec["loss"] = loss
            clock = time.perf_counter()
            if "sharpness" in self.quantities:
                H = self._hessian(prep, probe)
                r = _m.sharpness(H, tol=self.tol, max_iter=self.max_iter, v0=self._v0, generator=g)
                self._v0 = r.eigenvectors[:, 0]
                rec["sharpness"] = float(r.eigenvalues[0])
                rec["sharpness_products"] = r.matvecs
                rec["sharpness_converged"] = bool(r.converged)
                products += r.matvecs
                if lr is not None:
                    rec["two_over_lr"] = 2.0 / lr
                P = _m.adam_preconditioner(prep, optimizer)
                if P is not None:
                    rp = _m.preconditioned_sharpness(
                        H, P, tol=self.tol, max_iter=self.max_iter, v0=self._v0_pre,
                        generator=g,
                    )  # fmt: skip
                    self._v0_pre = rp.eigenvectors[:, 0]
                    rec["preconditioned_sharpness"] = float(rp.eigenvalues[0])
                    if lr is not None:
                        rec["preconditioned_threshold"] = _m.adam_threshold(optimizer, lr)
                    products += rp.matvecs
                clock = self._clock(rec, "sharpness", clock)
            if "ntk" in self.quantities:
                x_ntk = x[self.ntk_index] if group is None else self._shard.x_ntk.to(prep.device)
                vals, K, eig = self._replicated(
                    "ntk", lambda: _m.ntk_summary(prep, x_ntk, self._K0)
                )
                if self._K0 is None:
                    self._K0 = K
                rec.update(vals)
                spectra["ntk"] = eig
                products += len(x_ntk)
                clock = self._clock(rec, "ntk", clock)
            if "input_jacobian" in self.quantities:
                s = self._jacobian(prep, x)
                rec.update(_m.jacobian_values(s))
                spectra["input_jacobian"] = s
                clock = self._clock(rec, "input_jacobian", clock)
            if "layers" in self.quantities:
                vals, layer_spectra = self._replicated(
                    "layers", lambda: _m.layer_summary(prep.source)
                )
                rec.update(vals)
                spectra.update({f"weights/{k}": v for k, v in layer_spectra.items()})
                clock = self._clock(rec, "layers", clock)
        rec["products"] = products
        rec["diverging"] = self._diverging(rec)
        rec["seconds"] = time.perf_counter() - start
        self.history.append(rec)
        self.spectra.append(spectra)
        first = rec["diverging"] and not self.warned
        self.warned = self.warned or rec["diverging"]  # on every rank (the records are equal)
        if first and self.rank == 0:  # only rank 0 warns
            warnings.warn(
                f"SpectralMonitor: training is diverging at step {rec['step']} (the probe loss "
                f"rose {self.patience} measurements in a row above the stability threshold, or "
                "is not finite); lower the learning rate",
                DivergenceWarning,
                stacklevel=3,
            )
        if self.writer is not None and self.rank == 0:
            from .tensorboard import log_record

            log_record(self.writer, rec, spectra)
        if self._live is not None and self.rank == 0:
            self._live.update()
        return rec

    def _probe_loss(self, prep: Prepared, x, y, loss: float | None, group):
        """The mean loss over the (concatenated) probe and the training loss (under a group:
        the mean of the ranks' given losses); both the same on every rank."""
        if group is not None and len(x) == 0:
            value = 0.0
        else:
            with torch.no_grad():
                out = prep.loss_fn(prep.model(prep.inputs(x)), prep.labels(y, len(x)))
                value = float(scalar_loss(out))
        if group is None:
            return value, loss
        from ._sharded import combine_losses, param_digest

        digest = param_digest(_m._trainable(prep))
        return combine_losses(group, len(x), value * len(x), loss, digest)

    def _replicated(self, what: str, fn):
        """``fn()``, which every rank computes on the same inputs; under a group a failure on one
        rank raises on every rank (one status exchange) instead of leaving the others waiting."""
        if self._group is None:
            return fn()
        return guarded(self._group, f"SpectralMonitor ({what})", fn)

    def _jacobian(self, prep: Prepared, x: torch.Tensor) -> torch.Tensor:
        """Per-sample singular values of the input Jacobians of the probe's Jacobian samples;
        under a group each rank computes its own and they are gathered (single-process order)."""
        if self._group is None:
            return _m.jacobian_singular_values(prep, x[self.jac_index])
        s, err = None, None
        try:
            if self._shard.jac_local:
                s = _m.jacobian_singular_values(prep, self._shard.x_jac.to(prep.device))
        except Exception as e:  # noqa: BLE001 -- sent to the other ranks, then re-raised
            err = e
        return self._shard.gather_jacobian(s, err).to(prep.device)

    @staticmethod
    def _clock(rec: dict, name: str, since: float) -> float:
        now = time.perf_counter()
        rec[f"seconds/{name}"] = now - since
        return now

    def _diverging(self, rec: dict) -> bool:
        """The documented rule (class docstring): non-finite loss, or ``patience`` rises of the
        probe loss in a row above the stability threshold."""
        loss = rec["probe_loss"]
        if not math.isfinite(loss):
            return True
        past = [h["probe_loss"] for h in self.history[-self.patience :]] + [loss]
        if len(past) < self.patience + 1 or not all(b > a for a, b in zip(past, past[1:])):
            return False
        if "preconditioned_sharpness" in rec and "preconditioned_threshold" in rec:
            return rec["preconditioned_sharpness"] > rec["preconditioned_threshold"]
        if "sharpness" in rec and "two_over_lr" in rec:
            return rec["sharpness"] > rec["two_over_lr"]
        return True

    # --- reading the history ---------------------------------------------------------------------

    def to_dataframe(self):
        """The history as a ``pandas.DataFrame`` (one row per measurement), when pandas is
        installed (``pip install "spectral_lab[monitor]"``)."""
        from .._extras import require

        pd = require("pandas", "SpectralMonitor.to_dataframe")
        return pd.DataFrame(self.history)

    def figure(self, keys: Sequence[str] | None = None):
        """A Matplotlib figure of the history, one panel per key (default: the sharpness with
        ``2/eta``, the NTK drift, the Jacobian entropy, the layers' stable ranks)."""
        from .figure import monitor_figure

        return monitor_figure(self.history, keys)

    def live(self, keys: Sequence[str] | None = None):
        """Show the figure in a notebook and redraw it in place after every measurement (an
        ``IPython.display`` handle). Returns the monitor."""
        from .figure import LiveFigure

        self._live = LiveFigure(self, keys)
        self._live.update()
        return self
