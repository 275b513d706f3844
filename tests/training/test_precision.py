import pytest

from tfbert.training import cpu_supports_bfloat16, resolve_precision


def test_auto_precision_follows_the_cpu():
    expected = "mixed_bfloat16" if cpu_supports_bfloat16() else "float32"
    assert resolve_precision("auto") == expected
    assert resolve_precision("float32") == "float32"


def test_unknown_precision_raises():
    with pytest.raises(ValueError, match="Unknown precision='fp8'"):
        resolve_precision("fp8")
