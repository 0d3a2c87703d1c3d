"""Keep freed memory in the process during CPU training (glibc only).

PyTorch's CPU tensors come straight from ``malloc``. With glibc's defaults a
training step frees most of what its forward pass allocated; glibc returns
the large blocks to the system (``munmap``, heap trimming), and the next step
faults the same pages in again. On this project's 2-core benchmark machine
that costs about 0.2-0.4 s of kernel time per ``clginet-base`` step (batch 2,
128²: about 65-170 thousand minor page faults per step). With mmap off and a
1 GiB trim threshold the faults drop to zero and the step is about 14 %
faster; the measurement is ``benchmarks/allocator.py``.

The setting belongs to a process, not to a library: ``import clg_layers``
never changes it. ``clg-layers train`` and ``clg-layers demo`` (which own
their process) call :func:`tune_allocator`; your own training script may call
it too. Memory kept this way is memory the next step allocates again, so the
resident size stays near the step's peak instead of shrinking between steps.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["tune_allocator"]

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: Free memory at the heap's top that glibc may keep before returning it (1 GiB).
TRIM_THRESHOLD = 1 << 30

# Environment variables through which a user has already chosen glibc's behaviour: left alone then.
_USER_SETTINGS = (
    "GLIBC_TUNABLES",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TOP_PAD_",
)
_OPT_OUT = "CLG_LAYERS_TUNE_MALLOC"


def tune_allocator() -> bool:
    """Make glibc keep freed memory for reuse: no ``mmap`` for large blocks, a 1 GiB trim threshold.

    Nothing happens (and ``False`` is returned) when the C library is not
    glibc, when the environment already sets one of glibc's malloc variables
    (``GLIBC_TUNABLES``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_MMAP_MAX_``, ``MALLOC_TOP_PAD_``: your choice wins), or when
    ``CLG_LAYERS_TUNE_MALLOC=0``. Both settings are made together: setting the
    trim threshold alone also freezes glibc's adaptive mmap threshold at
    128 KiB, which makes every large tensor an ``mmap`` and a step about twice
    as slow.

    Returns:
        Whether the settings were applied.
    """
    if os.environ.get(_OPT_OUT, "1").strip().lower() in ("0", "false", "no"):
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success. Mmap first: were only the trim threshold set, glibc would stop
    # adapting its mmap threshold (see the docstring).
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
