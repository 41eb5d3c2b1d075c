"""Live-storage tracking: a TorchDispatchMode that counts every storage an op allocates until it is freed.

Works the same on real CPU tensors and on FakeTensors, which is what lets tests check the fake (predicted) run
against a real one. Each storage is rounded up to 512 bytes, as the CUDA caching allocator rounds every block,
and labelled with the component that allocated it (`Components.current()`); the per-label totals at the
moment of the peak are the breakdown.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import weakref
from collections import defaultdict
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

ALLOC_ROUND = 512  # bytes: the CUDA caching allocator's minimum block size and rounding
_ACCUMULATE_GRAD_SEQ = 2 ** 63  # AccumulateGrad nodes carry sequence_nr UINT64_MAX


def round_alloc(nbytes: int) -> int:
    return -(-int(nbytes) // ALLOC_ROUND) * ALLOC_ROUND


class StorageTracker(TorchDispatchMode):
    """Counts live storage bytes by label; remembers the total and the per-label split at the peak."""

    def __init__(self, label: Callable[[], str] = lambda: "other"):
        super().__init__()
        self.label = label
        self.live: dict[str, int] = defaultdict(int)  # label -> bytes live now
        self.total = 0
        self.peak = 0
        self.peak_live: dict[str, int] = {}
        self._entries: dict[int, list] = {}  # id(storage) -> [weakref, bytes, label]
        self._skip: dict = {}  # op -> True when it never allocates (views, aliases)

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def add(self, t: torch.Tensor, label: str | None = None) -> None:
        """Count `t`'s storage (once) under `label`, or the current component."""
        st = t.untyped_storage()
        key = id(st)
        if key in self._entries:
            return
        nbytes = round_alloc(st.nbytes())
        if nbytes == 0:
            return
        label = label or self.label()
        self._entries[key] = [weakref.ref(st, functools.partial(self._free, key)), nbytes, label]
        self.live[label] += nbytes
        self.total += nbytes
        if self.total > self.peak:
            self.peak = self.total
            self.peak_live = dict(self.live)

    def add_bytes(self, nbytes: int, label: str) -> None:
        """Count a fixed allocation that no tensor in the run represents (e.g. the cuBLAS workspace)."""
        self.live[label] += round_alloc(nbytes)
        self.total += round_alloc(nbytes)
        if self.total > self.peak:
            self.peak = self.total
            self.peak_live = dict(self.live)

    def transient(self, nbytes: int, label: str) -> None:
        """An allocation of `nbytes` that is freed right away: it only matters if it sets the peak."""
        self.add_bytes(nbytes, label)
        self.live[label] -= round_alloc(nbytes)
        self.total -= round_alloc(nbytes)

    def relabel(self, t: torch.Tensor, label: str) -> None:
        entry = self._entries.get(id(t.untyped_storage()))
        if entry is not None and entry[2] != label:
            self.live[entry[2]] -= entry[1]
            self.live[label] += entry[1]
            entry[2] = label

    def reset_peak(self) -> None:
        self.peak = self.total
        self.peak_live = dict(self.live)

    def _free(self, key: int, _ref) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.live[entry[2]] -= entry[1]
            self.total -= entry[1]

    # -- dispatch ------------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        skip = self._skip.get(func)
        if skip is None:
            skip = self._skip[func] = bool(func.is_view) or func.__name__.split(".")[0] in ("detach", "alias")
        if not skip:
            if isinstance(out, torch.Tensor):
                self.add(out)
            elif isinstance(out, (tuple, list)):
                for t in out:
                    if isinstance(t, torch.Tensor):
                        self.add(t)
        return out


class Components:
    """Which component is running: forward module hooks in forward, the autograd node's origin in backward.

    Forward: a pre-hook pushes the component's label, a post-hook pops it; each push/pop also records the
    autograd sequence number, so every graph node is later traced back to the component that created it.
    Backward: the running node (`torch._C._current_autograd_node()`) is looked up in those boundaries, so
    gradients in flight and checkpoint recomputation count towards the component whose backward runs.
    """

    def __init__(self, model: nn.Module):
        # a label function, or None / True for a hook fired during checkpoint recomputation (True: it entered
        # recompute_mode)
        self._stack: list = []
        self._phase: list[str] = []
        self._seqs: list[int] = []
        self._labels: list[str] = []
        self._handles: list = []
        self.scale = 0  # the decoder's current scale (set when bandwidth_features[l] runs)
        self.recompute_mode = None  # a TorchFunctionMode to re-enter while checkpointing recomputes a stack
        self._in_recompute = False
        dec = model.decoder
        table: list[tuple[nn.Module, Callable[[], str] | None]] = [
            (model.encoder, lambda: "encoder"),
            (model.processor, lambda: "processor"),
            (dec, None),  # decoder-level ops (the combination m_k, the output sum): skips[current scale]
            (dec.query_features, lambda: "modulation_ca"),  # the query embedding feeds modulation_ca
            (dec.query_lin, lambda: "modulation_ca"),
            (dec.spatial_bias, lambda: "modulation_ca"),
            (dec.modulation_ca, lambda: "modulation_ca"),
        ]
        for l, feats in enumerate(dec.bandwidth_features):
            table.append((feats, functools.partial(self._enter_scale, l)))
        seen: set[int] = set()
        for lins, name in ((dec.bandwidth_lins, "bandwidth_lins"), (dec.modulation_lins, "modulation_lins")):
            for m in lins:  # shared (share_scales) modules are hooked once and labelled by the running scale
                if id(m) not in seen:
                    seen.add(id(m))
                    table.append((m, functools.partial(lambda nm: f"{nm}[{self.scale}]", name)))
        for k, m in enumerate(dec.hv_lins):
            table.append((m, functools.partial(str, f"hv_lins[{k}]")))
        for l, (skip, out) in enumerate(zip(dec.skips, dec.out_lins)):  # the output path of scale l
            table.append((skip, functools.partial(str, f"skips[{l}]")))
            table.append((out, functools.partial(str, f"skips[{l}]")))
        for module, fn in table:
            self._handles.append(module.register_forward_pre_hook(functools.partial(self._pre, fn)))
            # always_call: the post-hook also runs when checkpointing stops a recomputation early (by raising)
            self._handles.append(module.register_forward_hook(self._post, always_call=True))

    def _enter_scale(self, l: int) -> str:
        self.scale = l
        return f"bandwidth_lins[{l}]"

    def _mark(self, label: str) -> None:
        self._seqs.append(torch._C._autograd._get_sequence_nr())
        self._labels.append(label)

    def _decoder_level(self) -> str:
        return f"skips[{self.scale}]"

    def _pre(self, fn, module, args):
        if torch._C._current_autograd_node() is not None:  # checkpoint recomputation: the node decides
            entered = self.recompute_mode is not None and not self._in_recompute
            if entered:  # the autograd engine does not carry torch-function modes into recomputation
                self.recompute_mode.__enter__()
                self._in_recompute = True
            self._stack.append(entered or None)
            return
        if fn is None:
            self.scale = 0
            fn = self._decoder_level
        else:
            fn = functools.partial(str, fn())  # evaluated once: a shared branch keeps the scale it ran at
        self._stack.append(fn)
        self._mark(fn())

    def _post(self, module, args, out):
        top = self._stack.pop()
        if top is True:
            self._in_recompute = False
            self.recompute_mode.__exit__(None, None, None)
        elif top is not None:
            self._mark(self._stack[-1]() if self._stack and callable(self._stack[-1]) else "other")

    @contextlib.contextmanager
    def phase(self, label: str) -> Iterator[None]:
        """Attribute everything allocated inside (outside any component or node) to `label`."""
        self._phase.append(label)
        try:
            yield
        finally:
            self._phase.pop()

    def current(self) -> str:
        node = torch._C._current_autograd_node()
        if node is not None:
            seq = node._sequence_nr()
            if seq >= _ACCUMULATE_GRAD_SEQ:
                return "gradients"
            i = bisect.bisect_right(self._seqs, seq) - 1
            return self._labels[i] if i >= 0 else "other"
        if self._stack and callable(self._stack[-1]):
            return self._stack[-1]()
        return self._phase[-1] if self._phase else "other"

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
