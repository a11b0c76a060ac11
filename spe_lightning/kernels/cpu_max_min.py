"""SPEM's CPU max/min kernel, built on first use with ``torch.utils.cpp_extension``.

PyTorch lacks a vectorised CPU kernel for the first index of a row's max and min, which
SPEM's backward needs (``argmax`` is a scalar loop there). ``max_min.cpp`` provides one,
built into ``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``) under a name
that holds the CPU's instruction set, the torch version and a hash of the source, so
machines of different types, torch releases and checkouts of different sources never load
each other's build, and a checkout finds its own build again after another was used.

``SPE_LIGHTNING_CPU_KERNEL`` chooses: ``auto`` (default) builds it and, where no C++
toolchain is available, warns once and pools with ``torch.max``/``torch.min`` (same
results, slower backward); ``1`` makes a failed build an error; ``0`` never builds.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spe_lightning.core.errors import InputError

ENV_VAR = "SPE_LIGHTNING_CPU_KERNEL"
_MODES = ("auto", "1", "0")
_SOURCE = Path(__file__).with_name("max_min.cpp")
# The instruction sets PyTorch compiles its own vectorised kernels for (ATen's
# CPU_CAPABILITY); the capability is part of the extension name so that machines of
# different types sharing one home directory never load each other's build.
_CAPABILITY_FLAGS = {
    "AVX512": [
        *("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"),
        "-DCPU_CAPABILITY_AVX512",
    ],
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY_AVX2"],
}

log = logging.getLogger(__name__)

MaxMinKernel = Callable[[Tensor], tuple[Tensor, Tensor]]


def kernel_mode() -> str:
    mode = os.environ.get(ENV_VAR, "auto").strip().lower()
    if mode not in _MODES:
        raise InputError(f"{ENV_VAR}={mode!r} is not allowed; use one of {', '.join(_MODES)}")
    return mode


def extension_name() -> str:
    """``spe_lightning_max_min_<capability>_torch<version>_<source hash>``: one build per kind of machine,
    torch release and kernel source."""
    capability = torch.backends.cpu.get_cpu_capability()
    source = hashlib.sha256(_SOURCE.read_bytes()).hexdigest()[:12]
    tag = re.sub(r"[^0-9a-z]+", "_", f"{capability}_torch{torch.__version__}_{source}".lower())
    return f"spe_lightning_max_min_{tag}"


def _import_load() -> Callable[..., Any]:
    # cpp_extension warns on import when it finds a CUDA toolkit but no GPU: noise for a CPU kernel
    cpp_log = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_log.level
    cpp_log.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load
    finally:
        cpp_log.setLevel(level)
    return load


def _build() -> MaxMinKernel:
    load = _import_load()
    flags = _CAPABILITY_FLAGS.get(torch.backends.cpu.get_cpu_capability(), [])
    log.info(
        "spe_lightning: loading the CPU max/min kernel %s (compiled once per machine and source)",
        extension_name(),
    )
    start = time.perf_counter()
    load(
        extension_name(),
        sources=[str(_SOURCE)],
        extra_cflags=["-O3", "-fopenmp", *flags],
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
    )
    seconds = time.perf_counter() - start
    if seconds > 1.0:
        log.info("spe_lightning: compiled the CPU max/min kernel in %.0f s; later runs reuse it", seconds)
    return torch.ops.spe_lightning_cpu.max_min


@functools.cache
def cpu_max_min() -> MaxMinKernel | None:
    """The compiled CPU kernel ``(outer, len, inner) -> (values, indices)``, each
    ``(2, outer, inner)`` (the max plane then the min plane, first index of each), or None where disabled."""
    mode = kernel_mode()
    if mode == "0":
        return None
    try:
        return _build()
    except Exception as err:  # a missing compiler or ninja shows up as many exception types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if mode == "1":
            raise RuntimeError(f"{ENV_VAR}=1 but the CPU max/min kernel did not build: {reason}") from err
        warnings.warn(
            f"spe_lightning: the CPU max/min kernel did not build ({reason}); max/min pooling on CPU "
            f"uses torch.max/torch.min instead (same results, slower backward). "
            f"Set {ENV_VAR}=0 to skip the build, or {ENV_VAR}=1 to make this an error.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
