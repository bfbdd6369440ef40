"""The one entrance: a model is checked and adapted here, once, for every call of the library.

:func:`prepare` turns any ``nn.Module`` (and, optionally, a first batch of its data) into a
:class:`Prepared` model, the only form the library's computations see. Every public call that
takes a model (the four operators, attribution, the profile, :func:`~spectral_lab.diagnose`, the
CLI) accepts either a module or a :class:`Prepared` and goes through :func:`prepare`, so one model
meets one policy everywhere:

* **Mode, by behaviour.** The analysed function is the model **in eval mode** (dropout off,
  BatchNorm on its running statistics): a spectrum needs one fixed function. The mode is switched
  inside each forward pass of the analysed model and every module's own flag is restored after
  it, so the user's model is left exactly as it was. Then the model is *run*: two forward passes
  on the same inputs must agree (else it is random even in eval mode: ``F.dropout(...,
  training=True)``, noise in ``forward``), and a sample's output must not change with the rest of
  its batch. Modules' types are never used to decide.
* **Samples that interact.** A batch-dependent model whose dependence comes from a batch norm
  without running statistics is evaluated sample by sample (each sample its own batch of one, one
  vmapped call); any other interaction (attention or pooling across the batch, a graph over the
  samples) is refused with the reason: per-sample operators of such a model are undefined.
* **Output.** Tuple, dict and ``ModelOutput`` outputs are read through their ``"logits"`` or first
  tensor, or what ``output=`` selects; ``(N,)`` regression outputs become ``(N, 1)``; a 3-D output
  (one row per token) is refused with the ``output=`` that fixes it.
* **Inputs.** Floating-point inputs are cast to the parameters' dtype and device; token ids
  (int32/int64 into a model with an ``nn.Embedding``) are kept, and input-space quantities are
  then taken with respect to the output of the input embedding (``embedding=``); every other
  integer dtype (uint8 images) is refused. NaN/Inf are refused.
* **Labels and loss.** ``loss="auto"`` picks ``"mse"`` for float targets and ``"cross_entropy"``
  for integer labels; labels are checked against the loss and the outputs (``(N,)`` regression
  targets are read as ``(N, 1)``) before any expensive work.
* **Precision and compilation.** A bfloat16/float16 model is analysed as a float32 copy; a
  ``torch.compile``'d model through its original module (the same parameters and function:
  compiled graphs support neither the double backward nor ``torch.func``'s transforms).
* **Routes.** The automatic-differentiation route chosen for each operator is cached on the
  :class:`Prepared` (``routes``), so a second call does not probe again.

What was done is written in ``Prepared.notes`` (and in every report built from it).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from ._adapt import LogitsOf, Output, TokenIds, _Wrapper, find_embedding, select_logits
from ._checks import check_input_dtype, check_labels, check_tensor
from ._data import iter_batches
from ._losses import resolve_loss

LOW_PRECISION = (torch.bfloat16, torch.float16)
PROBE = 8
"""Samples of the first batch the behaviour checks run on (three forward passes of at most this
many samples: the cost of preparing a model)."""


class EvalMode(_Wrapper):
    """``model`` evaluated in eval mode: every module's ``training`` flag is set to ``False`` for
    the forward pass and restored to its own value afterwards (the user's model is left as it was).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        saved = [(m, m.training) for m in self.model.modules()]
        for m, _ in saved:
            m.training = False
        try:
            return self.model(*args, **kwargs)
        finally:
            for m, flag in saved:
                m.training = flag


@dataclass(eq=False, repr=False)
class Prepared:
    """A model checked and adapted once (see the module docstring): what every call computes on.

    Attributes:
        model: the analysed function, floating-point inputs ``(N, ...)`` (token ids as floats)
            to ``(N, C)`` logits, in eval mode and per sample.
        logits: raw inputs (token ids as integers) to ``(N, C)`` logits; the embedding split
            (:meth:`input_space`) cuts this one.
        source: the module that was passed.
        tokens: the inputs are token ids.
        embedding: the input embedding (token ids only), ``embedding_name`` its name.
        loss: ``"mse"``, ``"cross_entropy"``, a callable, or ``None`` (not settled: no labels and
            ``loss="auto"``).
        num_outputs: ``C``.
        dtype, device: those of the parameters; inputs are cast to them.
        notes: what was done to the model, for the reports.
        routes: automatic-differentiation routes chosen so far, by operator.
        checked: whether the behaviour checks have run (they need a batch).

    Example:
        >>> from spectral_lab import MLP
        >>> prep = prepare(MLP(4, 3, width=8).train(), torch.randn(6, 4))
        >>> prep.num_outputs, prep.checked, prepare(prep) is prep
        (3, True, True)
        >>> prep.notes["mode"]
        'the model was in train mode: analysed in eval mode (dropout off, BatchNorm on running statistics); its own mode is left as it was'
    """

    model: nn.Module
    logits: nn.Module
    source: nn.Module
    tokens: bool
    embedding: nn.Module | None
    embedding_name: str | None
    loss: str | Callable | None
    num_outputs: int
    dtype: torch.dtype
    device: torch.device
    notes: dict[str, str] = field(default_factory=dict)
    routes: dict[str, object] = field(default_factory=dict)
    checked: bool = False
    output: Output = None
    asked_loss: object = field(default="auto", repr=False)
    asked_embedding: object = field(default=None, repr=False)
    pending: tuple | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        loss = self.loss if isinstance(self.loss, str) or self.loss is None else "callable"
        return (
            f"Prepared({type(self.source).__name__}, C={self.num_outputs}, loss={loss}, "
            f"tokens={self.tokens}, {str(self.dtype).removeprefix('torch.')} on {self.device})"
        )

    @property
    def loss_name(self) -> str:
        """The loss's name (``"custom"`` for an anonymous callable)."""
        loss = self.loss
        return loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")

    @property
    def loss_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The loss as a callable ``loss(outputs, y) -> scalar``."""
        if self.loss is None:
            raise ValueError(
                "the loss is not settled (no labels were given and loss='auto'); pass "
                "loss='cross_entropy' or loss='mse'"
            )
        return resolve_loss(self.loss)

    @property
    def num_params(self) -> int:
        """Trainable parameters ``p``."""
        return sum(t.numel() for t in self.model.parameters() if t.requires_grad)

    def inputs(self, x: object, name: str = "x") -> torch.Tensor:
        """``x`` checked by the one input policy and made ready for :attr:`model`: floats cast
        to the parameters' dtype and device, token ids as floats (``TokenIds`` rounds them)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if self.tokens and torch.is_floating_point(x):  # token ids already carried as floats
            if not bool((x == x.round()).all()):
                raise TypeError(f"{name}: this model takes token ids; got non-integer floats")
            return x.to(device=self.device, dtype=self.dtype)
        if check_input_dtype(x, self.source) != self.tokens:
            kind = "token ids" if self.tokens else "floating-point inputs"
            raise TypeError(
                f"{name} has dtype {x.dtype} but this model was prepared for {kind}; pass the "
                "same kind of input, or prepare the model again"
            )
        if not self.tokens:
            check_tensor(x, name, min_dim=2)
        elif x.dim() < 1 or x.numel() == 0:
            raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one sample")
        return x.to(device=self.device, dtype=self.dtype)

    def labels(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """Labels checked against the loss and the outputs (``(n, C)`` targets for ``"mse"``)."""
        if y is None or not isinstance(self.loss, str):
            return y
        y = check_labels(torch.as_tensor(y), n, self.num_outputs, self.loss)
        return y.to(self.device, self.dtype) if torch.is_floating_point(y) else y.to(self.device)

    def batches(
        self, data, batch_size: int | None = None, max_samples: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Stream ``(raw x, x for model, y)`` from any accepted ``data``, every batch checked
        (a one-shot iterator that :func:`prepare` read its first batch from gets it back)."""
        if self.pending is not None and self.pending[0] is data:
            data, self.pending = self.pending[1], None
        for xr, y in iter_batches(
            data, batch_size, max_samples, self.device, self.dtype, keep_integer_inputs=True
        ):
            yield xr, self.inputs(xr, "data inputs"), self.labels(y, len(xr))

    def input_space(self, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
        """``(f, e)``: the function whose input Jacobian is meant, and the point. Floating-point
        inputs: ``(model, x)``. Token ids: the model cut at its input embedding and the
        embedding's output ``e`` (see :func:`~spectral_lab.models.split_at_embedding`)."""
        if not self.tokens:
            return self.model, self.inputs(x)
        from ._adapt import split_at_embedding

        raw = x.to(self.device)
        self.inputs(raw)
        head, e = split_at_embedding(EvalMode(self.logits), raw, self.embedding)
        return head, e.to(self.dtype)


class Stream:
    """A re-iterable, checked view of ``data`` for a prepared model: each ``iter`` streams it again
    (an operator's products pass over the data many times), yielding ``(x, y)`` ready for
    :attr:`Prepared.model`; ``labelled=True`` refuses batches without labels."""

    def __init__(
        self, prep: Prepared, data, batch_size: int | None = None, *, labelled: bool = False
    ) -> None:
        self.prep, self.data, self.batch_size, self.labelled = prep, data, batch_size, labelled
        self._n: int | None = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        for _, x, y in self.prep.batches(self.data, self.batch_size):
            if self.labelled and y is None:
                raise ValueError("the loss needs labels: pass data as (x, y), not inputs alone")
            yield x, y

    def num_samples(self) -> int:
        """Total number of samples streamed (one pass, cached)."""
        if self._n is None:
            self._n = sum(len(x) for x, _ in self)
        return self._n


def _unwrap_compiled(model: nn.Module, notes: dict[str, str]) -> nn.Module:
    orig = getattr(model, "_orig_mod", None)
    if isinstance(orig, nn.Module) and type(model).__name__ == "OptimizedModule":
        notes["compiled"] = (
            "torch.compile'd: analysed through its original module (the same parameters and "
            "function; compiled graphs support neither double backward nor torch.func transforms)"
        )
        return orig
    return model


def _first_batch(data) -> tuple[torch.Tensor, torch.Tensor | None, object]:
    """The first batch of ``data`` and ``data`` to stream from afterwards (a one-shot iterator
    gets its first batch chained back in front)."""
    it = iter_batches(data, None if isinstance(data, torch.Tensor) else 256, None,
                      keep_integer_inputs=True)  # fmt: skip
    x, y = next(it)
    one_shot = iter(data) is data if hasattr(data, "__iter__") else False
    if one_shot:
        return x, y, itertools.chain([(x, y)], it)
    return x, y, data


def _auto_loss(loss, y, num_outputs: int):
    if loss is None or loss == "auto":
        if y is None:
            return None
        return "mse" if torch.is_floating_point(y) else "cross_entropy"
    resolve_loss(loss)  # a clear error for an unknown name
    return loss


def _batch_norm_without_statistics(model: nn.Module) -> bool:
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is None
        for m in model.modules()
    )


@torch.no_grad()
def _three_passes(model: nn.Module, probe: torch.Tensor):
    """``model`` twice on ``probe`` and once on its first half; buffers restored afterwards."""
    saved = {k: b.detach().clone() for k, b in model.named_buffers()}
    try:
        a, b = model(probe), model(probe)
        h = len(probe) // 2
        c = model(probe[:h]) if h >= 2 else None
    finally:
        for k, buf in model.named_buffers():
            buf.copy_(saved[k])
    return a, b, c, h


@torch.no_grad()
def _check_behaviour(prep: Prepared, x: torch.Tensor) -> None:
    """Run the analysed model on ``x`` (at most :data:`PROBE` samples): refuse a random model,
    and a batch-dependent one unless its dependence is a batch norm without running statistics
    (then evaluate it sample by sample). Buffers are restored afterwards."""
    from ._adapt import per_sample

    probe = x[:PROBE]
    model = prep.model

    def close(u, v):
        u, v = u.double(), v.double()
        return bool(torch.allclose(u, v, rtol=1e-4, atol=1e-5 * (1 + float(u.abs().max()))))

    a, b, c, h = _three_passes(model, probe)
    if not close(a, b):
        raise ValueError(
            "the model is random even in eval mode: two forward passes on the same inputs "
            "differ (F.dropout(..., training=True) or noise in forward); pass "
            "training=self.training to the functional dropout, or remove the noise"
        )
    if c is None or close(a[:h], c):
        return
    if not _batch_norm_without_statistics(prep.source):
        raise ValueError(
            "samples interact: a sample's output changes with the other samples of its batch "
            "(attention, pooling or message passing across the batch dimension), so per-sample "
            "Jacobians, saliency and the per-sample statistics are undefined for this model. If "
            "the batch is one object (a graph, a set), pass it as ONE sample: add a leading "
            "batch dimension of 1 and make the model map (1, ...) to (1, C)"
        )
    try:
        prep.logits = per_sample(prep.logits, probe.round().long() if prep.tokens else probe)
    except ValueError as why:
        raise ValueError(
            "the model is batch-dependent (a BatchNorm without running statistics normalises each "
            f"batch by its own statistics). {why}; call .eval() on a BatchNorm with running "
            "statistics (track_running_stats=True), or use GroupNorm/LayerNorm"
        ) from None
    prep.model = _analysed(prep.logits, prep.tokens)
    a, _, c, h = _three_passes(prep.model, probe)
    if not close(a[:h], c):  # the per-sample route must give a per-sample function
        raise ValueError(
            "the model is batch-dependent and stays so when every sample is evaluated as its "
            "own batch of one; call .eval() on a BatchNorm with running statistics"
        )
    prep.notes["batch"] = (
        "batch-dependent (BatchNorm without running statistics): every sample was evaluated as "
        "its own batch of one (one vmapped call)"
    )


def _analysed(logits: nn.Module, tokens: bool) -> nn.Module:
    model = EvalMode(logits)
    return TokenIds(model) if tokens else model


def _outputs(out: object, output: Output, n: int) -> tuple[torch.Tensor, str]:
    t, found = select_logits(out, output)
    if t.dim() == 3:
        raise ValueError(
            f"the model's output has shape {tuple(t.shape)} ({found}): one row per position "
            "(token), not one per sample. Pass output= selecting an (N, C) tensor, e.g. "
            "output=lambda out: out.logits[:, -1] (the last token's logits) or "
            "output=lambda out: out.logits.mean(1)"
        )
    if t.dim() != 2:
        raise ValueError(
            f"the model's output has shape {tuple(t.shape)} ({found}); the library needs (N, C) "
            "logits: pass output= (a key, an index or a callable) selecting an (N, C) tensor"
        )
    if t.shape[0] != n:
        raise ValueError(
            f"the model returned {t.shape[0]} rows for {n} inputs; it must map a batch of N "
            "inputs to N rows of outputs"
        )
    return t, found


def prepare(
    model: nn.Module | Prepared,
    data: object = None,
    *,
    loss: str | Callable | None = "auto",
    output: Output = None,
    embedding: nn.Module | str | None = None,
) -> Prepared:
    """Check and adapt ``model`` once, on the first batch of ``data``: the one entrance.

    Idempotent: a :class:`Prepared` is returned as it is (its behaviour checks run on ``data``
    if they have not yet; a different ``loss=`` gives a copy with that loss, labels re-checked).
    Every check happens here, before any expensive work; see the module docstring for the policy.

    Args:
        model: an ``nn.Module`` (any output structure, token ids or floats, any mode) or a
            :class:`Prepared`.
        data: a batch ``x``, an ``(x, y)`` pair, a Dataset, a DataLoader or an iterable of
            batches; its first batch (at most 8 samples of it) is what the model is run on.
            Without it only the static checks run and the behaviour checks wait for a call's data.
        loss: ``"auto"`` (``"mse"`` for float targets, ``"cross_entropy"`` for integer labels),
            ``"mse"``, ``"cross_entropy"`` or a callable ``loss(outputs, y) -> scalar``.
        output: which part of a tuple/dict output holds the logits (a key, an index or a
            callable; default: ``"logits"``, else the first tensor).
        embedding: for token-id inputs, the input embedding (a submodule or its name; default:
            the first ``nn.Embedding`` that runs).

    Returns:
        The :class:`Prepared` model.

    Raises:
        TypeError, ValueError: naming the problem and its fix (no parameters, integer images,
            NaN inputs, labels that do not fit the loss, a random model, samples that interact,
            an output that is not ``(N, C)``).

    Cost: at most three forward passes on 8 samples (plus one to find a token model's embedding).

    Example:
        >>> from spectral_lab import MLP
        >>> x, y = torch.randn(6, 4), torch.randn(6)  # (N,) regression targets
        >>> prep = prepare(MLP(4, 1, width=8), (x, y))
        >>> prep.loss, tuple(prep.labels(y, 6).shape)
        ('mse', (6, 1))
    """
    if isinstance(model, Prepared):
        return _reuse(model, data, loss, output, embedding)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    notes: dict[str, str] = {}
    model = _unwrap_compiled(model, notes)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "the model has no trainable parameters; spectral diagnostics need at least one "
            "parameter with requires_grad=True"
        )
    if params[0].dtype in LOW_PRECISION:
        notes["precision"] = (
            f"the model is in {str(params[0].dtype).removeprefix('torch.')}: analysed as a float32 "
            "copy (the same weights, upcast exactly; spectra in float32)"
        )
        model = copy.deepcopy(model).float()
        params = [p for p in model.parameters() if p.requires_grad]
    training = [n for n, m in model.named_modules() if m.training]
    if training:
        notes["mode"] = (
            "the model was in train mode: analysed in eval mode (dropout off, BatchNorm on "
            "running statistics); its own mode is left as it was"
        )
    prep = Prepared(
        model=EvalMode(model), logits=model, source=model, tokens=False, embedding=None,
        embedding_name=None, loss=None if loss in (None, "auto") else loss, num_outputs=0,
        dtype=params[0].dtype, device=params[0].device, notes=notes, output=output,
    )  # fmt: skip
    prep.asked_loss, prep.asked_embedding = loss, embedding
    if data is not None:
        _settle(prep, data)
    return prep


def _settle(prep: Prepared, data) -> None:
    """The checks that need a batch: dtype policy, output, labels and loss, behaviour."""
    x, y, rest = _first_batch(data)
    if rest is not data:
        prep.pending = (data, rest)
    x, y = x[:PROBE], (None if y is None else y[:PROBE])
    prep.tokens = check_input_dtype(x, prep.source)
    if prep.tokens:
        emb, name = find_embedding(prep.source, x.to(prep.device), prep.asked_embedding)
        prep.embedding, prep.embedding_name = emb, name
        prep.notes["input_space"] = (
            f"token ids: input-space quantities are taken with respect to the output of the "
            f"input embedding {name!r} ({type(emb).__name__})"
        )
    else:
        prep.notes["input_space"] = "the inputs"
    xin = prep.inputs(x, "data inputs")
    with torch.no_grad():
        try:
            raw = EvalMode(prep.source)(xin.round().long() if prep.tokens else xin)
        except (RuntimeError, TypeError, IndexError) as err:
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise ValueError(
                f"the model could not run on inputs of shape {tuple(x.shape)} (batch first): "
                f"{type(err).__name__}: {first}"
            ) from err
    out, found = _outputs(raw, prep.output, len(x))
    prep.notes["output"] = found
    plain = prep.output is None and isinstance(raw, torch.Tensor) and raw.dim() == 2
    prep.logits = prep.source if plain else LogitsOf(prep.source, prep.output)
    prep.model = _analysed(prep.logits, prep.tokens)
    prep.num_outputs = out.shape[1]
    asked = prep.asked_loss
    prep.loss = _auto_loss(asked, y, prep.num_outputs)
    prep.labels(y, len(x))
    _check_behaviour(prep, xin)
    if prep.loss is not None:
        prep.notes["loss"] = prep.loss_name
    prep.checked = True


def _reuse(prep: Prepared, data, loss, output, embedding) -> Prepared:
    if output is not None and output is not prep.output:
        raise ValueError("this model was prepared with another output=; prepare the module again")
    if embedding is not None and embedding is not prep.asked_embedding:
        raise ValueError(
            "this model was prepared with another embedding=; prepare the module again"
        )
    if not prep.checked and data is not None:
        if loss not in (None, "auto"):
            prep.asked_loss = loss
        _settle(prep, data)
        return prep
    if loss in (None, "auto") or loss == prep.loss:
        if loss in (None, "auto") and prep.loss is None and data is not None:
            _, y, _ = _first_batch(data)
            if y is not None:
                return _with_loss(prep, _auto_loss("auto", y, prep.num_outputs), y)
        return prep
    y = None
    if data is not None:
        _, y, _ = _first_batch(data)
    return _with_loss(prep, loss, y)


def _with_loss(prep: Prepared, loss, y) -> Prepared:
    resolve_loss(loss)
    new = dataclasses.replace(prep, loss=loss, asked_loss=loss, notes=dict(prep.notes))
    if y is not None and prep.checked:
        new.labels(y[:PROBE], min(len(y), PROBE))
    new.notes["loss"] = new.loss_name
    return new


__all__ = ["EvalMode", "Prepared", "Stream", "prepare"]
