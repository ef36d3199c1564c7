"""Atomic loads, stores and fences on int64 array elements, for numba kernels.

Why this exists: the ring's publication protocol (``common.ring``) depends on the order in
which a slot's stamp, its payload and the writer cursor become visible to another process.
Plain numba array loads and stores carry no ordering: LLVM may reorder them, merge them or
hoist a load out of a loop. These intrinsics emit LLVM atomic instructions with explicit
orderings, which both the optimiser and the CPU must respect.

Cost: on x86-64 (TSO) an acquire load and a release store are ordinary ``mov``s and an
acquire or release fence emits no instruction at all; they only stop the compiler from
moving memory accesses across them. On AArch64 they become ``ldar``/``stlr``/``dmb``, which
is exactly what that hardware needs. Nothing here is sequentially consistent (that would be
an ``mfence``/``xchg`` on x86 and is not needed by the protocol).

Every function takes a 1-D int64 array and an element index; the element must be 8-byte
aligned (numpy views over an mmap at a multiple of 8 always are). No bounds checks: callers
index only the fixed offsets of the segment layout.

Caching caveat: numba's on-disk cache (``cache=True``) keys each kernel on its own source
file only. After editing this module, delete ``common/__pycache__/ring.*.nb[ic]`` (or touch
``common/ring.py``) so the ring kernels are recompiled with the new intrinsics.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_ALIGN_BYTES = 8  # every ring word is an aligned int64


def _is_i64_vector(ary) -> bool:
    return isinstance(ary, types.Array) and ary.dtype == types.int64 and ary.ndim == 1


def _element_pointer(context, builder, aryty, ary, idxty, idx):
    """LLVM pointer to ``ary[idx]`` (no wraparound, no bounds check)."""
    arr = context.make_array(aryty)(context, builder, ary)
    i = context.cast(builder, idx, idxty, types.intp)
    return cgutils.get_item_pointer(context, builder, aryty, arr, [i], wraparound=False)


@intrinsic
def load_acquire(typingctx, ary, idx):
    """``ary[idx]`` with acquire order: later loads cannot be satisfied before this one."""
    if not (_is_i64_vector(ary) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load_atomic(ptr, "acquire", _ALIGN_BYTES)

    return types.int64(ary, idx), codegen


@intrinsic
def load_relaxed(typingctx, ary, idx):
    """``ary[idx]`` as a fresh atomic load (monotonic): never merged with an earlier load."""
    if not (_is_i64_vector(ary) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load_atomic(ptr, "monotonic", _ALIGN_BYTES)

    return types.int64(ary, idx), codegen


def _store(ordering: str):
    def typer(typingctx, ary, idx, val):
        if not (_is_i64_vector(ary) and ary.mutable and isinstance(idx, types.Integer)
                and isinstance(val, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            ptr = _element_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
            v = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.store_atomic(v, ptr, ordering, _ALIGN_BYTES)
            return context.get_dummy_value()

        return types.void(ary, idx, val), codegen

    typer.__name__ = typer.__qualname__ = f"store_{ordering}"  # distinct intrinsic names
    return typer


store_release = intrinsic(_store("release"))
store_release.__doc__ = "``ary[idx] = val`` with release order: earlier stores are visible first."
store_relaxed = intrinsic(_store("monotonic"))
store_relaxed.__doc__ = "``ary[idx] = val`` as one indivisible store, no ordering of its own."


def _fence(ordering: str):
    def typer(typingctx):
        def codegen(context, builder, sig, args):
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    typer.__name__ = typer.__qualname__ = f"fence_{ordering}"
    return typer


fence_release = intrinsic(_fence("release"))
fence_release.__doc__ = "Earlier loads/stores are ordered before any later store."
fence_acquire = intrinsic(_fence("acquire"))
fence_acquire.__doc__ = "Earlier loads are ordered before any later load or store."
