"""A function's JVP at a fixed point, recorded once as the list of operations on tangents.

Forward-mode AD computes ``(f(x), J_f(x) t)`` together: every operation runs once on the primal
values and once (or a few times) on the tangents. When many products ``J_f(x) t`` are needed at
the same ``x`` -- a Hessian ``H v = J_{grad L}(theta) v`` inside Lanczos or Hutchinson, or the
NTK's ``J v`` -- the primal half is the same every time. :class:`Linearized` runs ``f`` once
under forward-mode AD with a ``TorchDispatchMode`` that records, in order, only the ATen
operations that read a tangent (their other arguments -- primal intermediates, weights, masks --
are kept as constants); a product replays those operations on new tangents, freeing each
intermediate after its last use.

This is what ``torch.func.linearize`` does with ``make_fx`` and constant folding; recording at the
dispatcher without building an FX graph costs about two products instead of about ten (0.09 s
against 0.45 s for the course CNN on 512 MNIST images), which is what makes it worth doing for the
10--60 products of a Lanczos or Hutchinson run. The products are the same operations on the same
values (bit for bit the same as ``torch.func.linearize`` there).

Constants are held by reference; a primal tensor that the code changes in place after a recorded
step read it is copied just before the change (copy on write), so a replay sees the value the
step saw. Recording refuses (``NotLinearizable``) what a replay could not reproduce: an operation
that reads a tangent's *values* into Python (``.item()``, ``torch.equal``), or writes tangent
values into a tensor that is not itself a tangent (a buffer that other code may alias). Callers
fall back to another route then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

_aten = torch.ops.aten
#: operations whose result depends on the values of their tensor inputs, not only on shapes
_READS_VALUES = {
    _aten._local_scalar_dense.default,
    _aten.equal.default,
    _aten.is_nonzero.default,
}


class NotLinearizable(RuntimeError):
    """The computation cannot be replayed on new tangents from a recording."""


def _storage(t: torch.Tensor) -> int | None:
    return t.untyped_storage().data_ptr() if t.layout == torch.strided else None


def _written(func, args, kwargs) -> list[torch.Tensor]:
    """The tensor arguments ``func`` writes to (in-place and ``out=`` arguments)."""
    if not func._schema.is_mutable:
        return []
    found = []
    for i, arg in enumerate(func._schema.arguments):
        if arg.alias_info is not None and arg.alias_info.is_write:
            target = args[i] if i < len(args) else kwargs.get(arg.name)
            if isinstance(target, torch.Tensor):
                found.append(target)
    return found


class _Recorder(TorchDispatchMode):
    """Records the operations that read a tracked tensor (a tangent or a result computed from
    one). Tracked tensors are held alive while recording so that ``id`` identifies them.

    Constants are kept by reference, so a primal tensor changed in place *after* a recorded step
    read it (``h @ W`` then ``h.mul_(2)``) would be replayed with its new value: before any
    operation writes to a storage that recorded steps read, those steps get their own copy
    (copy on write; ``self.readers`` maps a storage to the templates that read it)."""

    def __init__(self, inputs: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.slot = {id(t): i for i, t in enumerate(inputs)}
        self.alive = list(inputs)
        self.steps: list[tuple] = []
        self.readers: dict[int, list[list]] = {}

    def _tracked(self, a: object) -> bool:
        return isinstance(a, torch.Tensor) and id(a) in self.slot

    def _copy_before_write(self, written: list[torch.Tensor]) -> None:
        for target in written:
            key = _storage(target)
            copies: dict[int, torch.Tensor] = {}
            for template in self.readers.pop(key, []):
                for k, (kind, a) in enumerate(template):
                    if kind == "c" and isinstance(a, torch.Tensor) and _storage(a) == key:
                        if id(a) not in copies:
                            copies[id(a)] = a.clone()
                        template[k] = ("c", copies[id(a)])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, spec = tree_flatten((args, kwargs))
        written = _written(func, args, kwargs)
        if written and self.readers:
            self._copy_before_write(written)
        if not any(self._tracked(a) for a in flat):
            return func(*args, **kwargs)
        if func in _READS_VALUES:
            raise NotLinearizable(f"{func} reads tangent values")
        if any(not self._tracked(t) for t in written):
            raise NotLinearizable(f"{func} writes tangent values into a constant tensor")
        template = [("t", self.slot[id(a)]) if self._tracked(a) else ("c", a) for a in flat]
        for key in {_storage(a) for k, a in template if k == "c" and isinstance(a, torch.Tensor)}:
            self.readers.setdefault(key, []).append(template)
        out = func(*args, **kwargs)
        outs = []
        for j, o in enumerate(tree_flatten(out)[0]):
            if not isinstance(o, torch.Tensor):
                continue
            if any(o is a for a in flat):  # an input returned (in place): it keeps its slot
                if self._tracked(o):
                    outs.append((j, self.slot[id(o)]))
                continue
            self.slot[id(o)] = len(self.alive)
            self.alive.append(o)
            outs.append((j, self.slot[id(o)]))
        if outs:
            self.steps.append((func, spec, template, outs))
        return out


class Linearized:
    """``t -> J_f(x) t`` for ``f`` at the fixed point ``x = primals``, recorded once.

    ``fn(duals)`` maps a list of tensors (dual tensors while recording) to a list of tensors.
    ``self(tangents)`` returns the list of output tangents (zeros for an output that does not
    depend on the inputs); ``self.nbytes`` is the memory the recording adds: the distinct
    storages of its constants, less those of the primals and of ``held`` (tensors the caller
    keeps anyway, such as the data) -- the weights a step reads cost nothing extra. Cost: one forward-mode evaluation of ``fn`` to record, then
    per product the tangent operations only (for ``grad L`` about 1.2 gradients, against 1.5 for
    a double backward through a kept graph and 2.5 for a fresh forward-over-reverse).

    Example: the Hessian of ``sum(x**3)`` at ``x`` is ``diag(6 x)``.
        >>> x = torch.tensor([1.0, 2.0])
        >>> grad = lambda xs: [3 * xs[0] ** 2]
        >>> Linearized(grad, [x])([torch.tensor([1.0, 1.0])])[0]
        tensor([ 6., 12.])
    """

    def __init__(
        self,
        fn: Callable[[list[torch.Tensor]], Sequence[torch.Tensor]],
        primals: Sequence[torch.Tensor],
        held: Sequence[torch.Tensor] = (),
    ) -> None:
        primals = [p.detach() for p in primals]
        with fwAD.dual_level():
            duals = [fwAD.make_dual(p, torch.zeros_like(p)) for p in primals]
            tangents = [fwAD.unpack_dual(d).tangent for d in duals]
            with _Recorder(tangents) as rec:
                outputs = list(fn(duals))
            out_tangents = [fwAD.unpack_dual(o).tangent for o in outputs]
        self.outputs: list[tuple] = []
        for o, t in zip(outputs, out_tangents):
            if t is None:
                self.outputs.append(("zeros", o.shape, o.dtype, o.device))
            elif id(t) in rec.slot:
                self.outputs.append(("t", rec.slot[id(t)]))
            else:
                raise NotLinearizable("an output tangent was not computed by recorded operations")
        self.steps = rec.steps
        self.contiguous = [t.is_contiguous() for t in tangents]  # recorded views assume it
        self.num_inputs = len(primals)
        self.num_slots = len(rec.alive)
        self.free = self._last_uses()
        free = {_storage(t) for t in [*primals, *held]}
        seen: dict[int, int] = {}
        for _, _, template, _ in self.steps:
            for kind, a in template:
                if kind == "c" and isinstance(a, torch.Tensor) and _storage(a) not in free:
                    seen[_storage(a)] = a.untyped_storage().nbytes()
        self.nbytes = sum(seen.values())

    def _last_uses(self) -> list[list[int]]:
        """For each step, the intermediate slots read for the last time there (freed after it)."""
        last: dict[int, int] = {}
        for i, (_, _, template, _) in enumerate(self.steps):
            for kind, a in template:
                if kind == "t":
                    last[a] = i
        keep = {o[1] for o in self.outputs if o[0] == "t"}
        free: list[list[int]] = [[] for _ in self.steps]
        for slot, i in last.items():
            if slot >= self.num_inputs and slot not in keep:
                free[i].append(slot)
        return free

    def __call__(self, tangents: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        vals: list[torch.Tensor | None] = [None] * self.num_slots
        vals[: self.num_inputs] = [
            t.contiguous() if c else t for t, c in zip(tangents, self.contiguous)
        ]
        with torch.no_grad():
            for (func, spec, template, outs), free in zip(self.steps, self.free):
                args, kwargs = tree_unflatten(
                    [vals[a] if k == "t" else a for k, a in template], spec
                )
                res = tree_flatten(func(*args, **kwargs))[0]
                for j, slot in outs:
                    vals[slot] = res[j]
                for slot in free:
                    vals[slot] = None
            return [
                vals[o[1]] if o[0] == "t" else torch.zeros(o[1], dtype=o[2], device=o[3])
                for o in self.outputs
            ]
