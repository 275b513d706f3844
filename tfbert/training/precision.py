"""Choosing a Keras dtype policy for the hardware at hand."""

import tensorflow as tf

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def cpu_supports_bfloat16() -> bool:
    """True when the CPU has native bfloat16 dot products (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str = "auto") -> str:
    """A Keras dtype policy name for `precision`.

    "auto" picks "mixed_bfloat16" on GPUs with native bf16 (compute capability
    8.0+) and on CPUs with AVX512-BF16/AMX, "mixed_float16" on older GPUs, and
    "float32" otherwise. Explicit names are checked and returned.
    """
    if precision == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            capability = details.get("compute_capability", (0, 0))
            return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16"
        return "mixed_bfloat16" if cpu_supports_bfloat16() else "float32"
    if precision not in POLICIES:
        raise ValueError(
            f"Unknown precision={precision!r}; use 'auto' or one of {list(POLICIES)}."
        )
    return precision
