"""Keep freed memory in the process: glibc malloc settings for training.

A training step allocates and frees hundreds of megabytes of temporary arrays
(the sparse convolution's per-position entry lists, gradients per entry, spike
buffers). With glibc's defaults every block above its mmap threshold (128 KiB,
growing up to 32 MiB as large blocks are freed) is a fresh ``mmap`` that is
unmapped again when freed, and the top of the heap is trimmed above 128 KiB: the
next step faults every page in again and the kernel zeroes it. On the trained
``15C5-P2-40C5-P2-300`` of the declared elastic run that was 20 000-29 000 minor
page faults per step of 50 samples and 17-22 % of the step (240-360 faults with
these settings; ``benchmarks/bench_freed_memory.py``, ``docs/performance.md``).

:func:`keep_freed_memory` raises both thresholds to :data:`KEEP_BYTES`, so blocks
up to that size come from the heap and freed memory up to that size stays in the
process for the next step (``mallopt(M_MMAP_THRESHOLD)``, ``mallopt(M_TRIM_THRESHOLD)``).
The process keeps the memory of its largest step instead of returning it
between steps; the arithmetic does not change (bit-identical results).

Called by :func:`eventsnn.train.train` and by every ``eventsnn`` command. It does
nothing where the C library is not glibc, or when the user set glibc's malloc
tunables in the environment (``MALLOC_*_`` variables or ``GLIBC_TUNABLES`` with
``glibc.malloc``): the user's choice wins. Local Dask workers started by
eventsnn get the same settings as environment variables before they start
(:data:`MALLOC_ENVIRONMENT`).
"""

from __future__ import annotations

import ctypes
import os
import sys

#: Blocks up to this size come from the heap, and freed memory up to this size
#: stays in the process (bytes).
KEEP_BYTES = 1 << 30
#: The same settings as environment variables, for processes that eventsnn starts
#: (local Dask workers: ``eventsnn.distributed.WORKER_MALLOC``); glibc reads them at start.
MALLOC_ENVIRONMENT = {"MALLOC_TRIM_THRESHOLD_": str(KEEP_BYTES), "MALLOC_MMAP_THRESHOLD_": str(KEEP_BYTES)}
#: mallopt parameters (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Environment variables through which a user sets glibc's malloc tunables.
USER_MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                         "MALLOC_MMAP_MAX_")


def _glibc():
    """The process's C library when it is glibc, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc if version() else None


def user_set_malloc(environ=None) -> bool:
    """Whether the environment sets glibc's malloc tunables (the user's choice wins)."""
    env = os.environ if environ is None else environ
    return any(k in env for k in USER_MALLOC_VARIABLES) or "glibc.malloc" in env.get("GLIBC_TUNABLES", "")


def keep_freed_memory(nbytes: int = KEEP_BYTES) -> bool:
    """Let blocks up to ``nbytes`` come from the heap and keep freed memory up to
    ``nbytes`` in the process (glibc only).

    Parameters
    ----------
    nbytes : int
        Both thresholds, in bytes (1 <= nbytes < 2**31).

    Returns
    -------
    bool
        True when the settings were applied; False where the C library is not
        glibc or the environment sets malloc tunables (left as they are).
    """
    nbytes = int(nbytes)
    if not 1 <= nbytes < 2**31:
        raise ValueError(f"nbytes must be in [1, 2**31), got {nbytes}")
    if user_set_malloc():
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, nbytes)) and bool(libc.mallopt(M_TRIM_THRESHOLD, nbytes))
