"""Adapters that let any model meet the library's contract ``model(x: float (N, ...)) -> (N, C)``.

* :func:`as_logits` picks the logits out of tuple and dict outputs (the ``"logits"`` key, else the
  first tensor, or what ``output=`` names) and turns a regression output ``(N,)`` into ``(N, 1)``.
* :class:`TokenIds` takes token ids as a float tensor and hands them to the model as ``long``, so
  every parameter-space call (parameter Jacobian, NTK, Hessian) runs unchanged on a text model,
  embedding table included (ids up to ``2**24`` are exact in float32).
* :func:`split_at_embedding` cuts the model at its input embedding: the returned module takes the
  embedding's output ``e`` as its (float) input, so input-space quantities (input Jacobian,
  saliency, input sensitivity) of a token-id model are taken with respect to ``e``.

All three are ordinary ``nn.Module``\\ s sharing the wrapped model's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

Output = str | int | Callable[[object], torch.Tensor] | None


def _first_tensor(out) -> tuple[torch.Tensor | None, str]:
    if isinstance(out, torch.Tensor):
        return out, "the output tensor"
    if isinstance(out, Mapping):
        if "logits" in out and isinstance(out["logits"], torch.Tensor):
            return out["logits"], "output['logits']"
        for k, v in out.items():
            if isinstance(v, torch.Tensor):
                return v, f"output[{k!r}] (the first tensor)"
    if isinstance(out, (tuple, list)):
        for i, v in enumerate(out):
            if isinstance(v, torch.Tensor):
                return v, f"output[{i}] (the first tensor)"
    logits = getattr(out, "logits", None)  # e.g. a HuggingFace ModelOutput
    if isinstance(logits, torch.Tensor):
        return logits, "output.logits"
    return None, ""


def select_logits(out, output: Output = None) -> tuple[torch.Tensor, str]:
    """The logits in a model's output and how they were found: ``output=None`` takes the tensor
    itself, the ``"logits"`` key/attribute or the first tensor; a key (``str``), an index (``int``)
    or a callable ``output(out) -> tensor`` selects it. A 1-D ``(N,)`` output becomes ``(N, 1)``."""
    if output is None:
        t, how = _first_tensor(out)
    elif callable(output):
        t, how = output(out), f"{getattr(output, '__name__', 'output')}(output)"
    else:
        try:
            t, how = out[output], f"output[{output!r}]"
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(
                f"output={output!r} does not select anything in the model's output "
                f"({type(out).__name__}): {e}"
            ) from None
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"could not find the logits in a model output of type {type(out).__name__}; pass "
            "output= (a key, an index or a callable returning the logits tensor)"
        )
    if t.dim() == 1:
        t, how = t[:, None], how + ", (N,) read as (N, 1)"
    return t, how


class _Wrapper(nn.Module):
    """A module around ``self.model`` whose train/eval mode is the wrapped model's."""

    model: nn.Module

    @property
    def training(self) -> bool:  # type: ignore[override]
        model = self.__dict__.get("_modules", {}).get("model")
        return True if model is None else model.training

    @training.setter
    def training(self, mode: bool) -> None:  # the mode lives on the wrapped model
        pass


class LogitsOf(_Wrapper):
    """``model`` whose forward returns the logits tensor (see :func:`as_logits`)."""

    def __init__(self, model: nn.Module, output: Output = None) -> None:
        super().__init__()
        self.model, self.output = model, output
        self.found = ""

    def forward(self, *args, **kwargs) -> torch.Tensor:
        t, self.found = select_logits(self.model(*args, **kwargs), self.output)
        return t


def as_logits(model: nn.Module, output: Output = None) -> nn.Module:
    """``model`` wrapped so that its forward returns one ``(N, C)`` logits tensor.

    Tuple and dict outputs: the ``"logits"`` key (or ``.logits``), else the first tensor, or what
    ``output=`` selects (a key, an index or a callable ``output(out) -> tensor``). A regression
    output ``(N,)`` becomes ``(N, 1)``. After a forward pass, ``.found`` says which output was used.
    Use the wrapped model with every function of the library.

    Example:
        >>> class Two(nn.Module):
        ...     def __init__(self):
        ...         super().__init__(); self.lin = nn.Linear(3, 2)
        ...     def forward(self, x):
        ...         return {"features": x, "logits": self.lin(x)}
        >>> m = as_logits(Two()); m(torch.zeros(4, 3)).shape, m.found
        (torch.Size([4, 2]), "output['logits']")
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return LogitsOf(model, output)


class TokenIds(_Wrapper):
    """``model`` taking token ids as a float tensor (``model(x.long())``): parameter-space calls
    (parameter Jacobian, NTK, Hessian) then run unchanged, the embedding table included."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.round().long())


class PerSample(_Wrapper):
    """``model`` evaluated on every sample as its own batch of one: ``vmap(lambda x_i:
    model(x_i[None])[0])(x)``, one vmapped call (no loop over samples). Gives a batch-dependent
    model (BatchNorm without running statistics) a per-sample function: each sample normalised by
    its own statistics. Ill-posed, and refused by :func:`per_sample`, where a batch of one has a
    single value per normalised channel."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.func.vmap(lambda xi: self.model(xi[None])[0])(x)


def per_sample(model: nn.Module, x: torch.Tensor) -> PerSample:
    """``model`` wrapped as :class:`PerSample`, checked on ``x``: raises ``ValueError`` with the
    reason when a batch of one is ill-posed for the model (e.g. a batch norm over one value per
    channel: zero variance) or the model cannot be vmapped over samples.

    Example:
        >>> bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)).eval()
        >>> x = torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(per_sample(bn, x)(x)[1:2], bn(x[1:2]), atol=1e-6)
        True
    """
    wrapped = PerSample(model)
    try:
        with torch.no_grad():
            wrapped(x[: min(len(x), 2)])
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"the per-sample route (each sample its own batch of one) is ill-posed or cannot run "
            f"for this model: {first}"
        ) from None
    return wrapped


def find_embedding(model: nn.Module, tokens: torch.Tensor, embedding=None) -> tuple[nn.Module, str]:
    """The input embedding of ``model`` and its name: ``embedding`` (a submodule or its name), else
    the first ``nn.Embedding`` that runs in a forward pass on ``tokens``."""
    names = {m: n for n, m in model.named_modules()}
    if embedding is not None:
        if isinstance(embedding, str):
            mods = dict(model.named_modules())
            if embedding not in mods:
                raise ValueError(f"embedding={embedding!r} is not a submodule name of the model")
            return mods[embedding], embedding
        if embedding not in names:
            raise ValueError("embedding= must be a submodule of the model (or its name)")
        return embedding, names[embedding]
    fired: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, i, o: fired.append(mod))
        for m in model.modules()
        if isinstance(m, nn.Embedding)
    ]
    try:
        with torch.no_grad():
            model(tokens[:1])
    finally:
        for h in hooks:
            h.remove()
    if not fired:
        raise ValueError(
            "token-id inputs need an input embedding: no nn.Embedding ran in the forward pass; "
            "name it with embedding="
        )
    return fired[0], names[fired[0]]


class _EmbeddingSplit(_Wrapper):
    def __init__(
        self, model: nn.Module, embedding: nn.Module, tokens: torch.Tensor, e: torch.Tensor
    ) -> None:
        super().__init__()
        self.model, self.embedding = model, embedding
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("e0", e, persistent=False)

    def _tokens_for(self, e: torch.Tensor) -> torch.Tensor:
        n, k = len(self.tokens), len(e)
        if k == n:
            return self.tokens
        if k > n and k % n == 0:  # copies of the batch laid end to end (SmoothGrad, IG paths)
            return self.tokens.repeat(k // n, *([1] * (self.tokens.dim() - 1)))
        if k < n:  # a sub-batch (a probe or a chunk): find it among the bound embeddings
            for i in range(n - k + 1):
                if torch.equal(self.e0[i : i + k], e.detach().to(self.e0.dtype)):
                    return self.tokens[i : i + k]
        raise ValueError(
            f"this split model is bound to {n} token sequences; got {k} embeddings that are not "
            "a sub-batch of them. Pass all the embeddings at once (e.g. input_jacobian(head, e, "
            "route='backward', chunk_size=len(e)))"
        )

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        tokens = self._tokens_for(e)
        handle = self.embedding.register_forward_hook(lambda mod, i, o: e.to(o.dtype))
        try:
            return self.model(tokens)
        finally:
            handle.remove()


def split_at_embedding(
    model: nn.Module, tokens: torch.Tensor, embedding=None
) -> tuple[nn.Module, torch.Tensor]:
    """Cut ``model`` at its input embedding, for the token ids ``tokens``: returns ``(head, e)``
    with ``e`` the embedding's output on ``tokens`` and ``head(e') = model(tokens)`` with the
    embedding's output replaced by ``e'`` (a forward hook). Input-space quantities of a token-id
    model are those of ``head`` at ``e``. ``head`` is bound to this batch: it takes the whole
    batch of embeddings (perturbed or not), or an unperturbed sub-batch of them, which it finds
    by value (what the Jacobian routes do when they probe or chunk). ``embedding`` is found as in
    :func:`find_embedding`.

    Example:
        >>> m = nn.Sequential(nn.Embedding(5, 3), nn.Flatten(), nn.Linear(6, 2))
        >>> head, e = split_at_embedding(m, torch.tensor([[1, 2], [3, 4]]))
        >>> e.shape, torch.equal(head(e), m(torch.tensor([[1, 2], [3, 4]])))
        (torch.Size([2, 2, 3]), True)
    """
    emb, _ = find_embedding(model, tokens, embedding)
    got: list[torch.Tensor] = []
    h = emb.register_forward_hook(lambda mod, i, o: got.append(o.detach()))
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        h.remove()
    return _EmbeddingSplit(model, emb, tokens, got[0]), got[0]


__all__ = ["as_logits", "find_embedding", "select_logits", "split_at_embedding", "TokenIds"]
