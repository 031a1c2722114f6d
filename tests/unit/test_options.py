"""Unit tests for plugins/module_utils/kubeflat_options.py (shared role option checks)."""
import pytest

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_options import (
    check_bool, check_str_list, merge_options, valid_registry)


class OptError(InputError):
    pass


def test_merge_keeps_defaults_and_ignores_none():
    merged = merge_options({"a": 2, "b": None}, {"a": 1, "b": "x"}, "role_", OptError)
    assert merged == {"a": 2, "b": "x"}


def test_merge_refuses_an_unknown_key_naming_the_variable():
    with pytest.raises(OptError) as exc:
        merge_options({"typo": 1}, {"a": 1}, "role_", OptError)
    assert exc.value.var == "role_typo" and "unknown option" in str(exc.value)


@pytest.mark.parametrize("value", ["true", 1, None])
def test_check_bool_refuses_non_booleans(value):
    with pytest.raises(OptError) as exc:
        check_bool({"k": value}, "k", "role_", OptError)
    assert exc.value.var == "role_k"


def test_check_bool_accepts_booleans():
    assert check_bool({"k": False}, "k", "role_", OptError) is False


def test_check_str_list():
    assert check_str_list({"k": None}, "k", "p_", OptError) == []
    assert check_str_list({"k": ("a", "b")}, "k", "p_", OptError) == ["a", "b"]
    with pytest.raises(OptError, match="must be a list of strings"):
        check_str_list({"k": "eth0"}, "k", "p_", OptError)
    with pytest.raises(OptError, match="non-empty"):
        check_str_list({"k": ["eth0", " "]}, "k", "p_", OptError)


@pytest.mark.parametrize("value,ok", [("", True), ("ghcr.io", True),
                                      ("registry.local:5000/mirror", True),
                                      ("https://ghcr.io", False), ("ghcr.io/", False),
                                      (None, False), ("Registry.io", False)])
def test_valid_registry(value, ok):
    assert valid_registry(value) is ok
