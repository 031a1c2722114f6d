"""Unit tests for plugins/module_utils/kubeflat_nodeprep.py: built-in vs loaded vs loadable
kernel modules, 'not permitted here' vs real sysctl failures."""

import pytest

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_nodeprep as np


def state(name, **kw):
    facts = dict(sys_module=False, sys_initstate=None, indicator=False, builtin_listed=False,
                 loadable_support=True)
    facts.update(kw)
    return np.module_state(name, **facts)[0]


def test_module_states():
    # This machine: no /proc/modules, overlay in /sys/module without initstate.
    assert state("overlay", sys_module=True, loadable_support=False) == "builtin"
    # br_netfilter built in: no /sys/module entry, but /proc/sys/net/bridge exists.
    assert state("br_netfilter", indicator=True, loadable_support=False) == "builtin"
    assert state("br_netfilter", sys_module=True, sys_initstate="live\n") == "loaded"
    assert state("overlay", builtin_listed=True) == "builtin"
    assert state("br_netfilter") == "loadable"
    assert state("br-netfilter") == "loadable"
    # Neither built in nor loadable: a real failure the role must not hide.
    assert state("br_netfilter", loadable_support=False) == "unavailable"


def test_module_detail_names_the_evidence():
    _, detail = np.module_state("br_netfilter", False, None, True, False, False)
    assert "/proc/sys/net/bridge/bridge-nf-call-iptables" in detail and "built into" in detail


@pytest.mark.parametrize("bad", ["", "br netfilter", "../x", None, 3])
def test_bad_module_names_are_refused(bad):
    with pytest.raises(np.NodePrepError) as err:
        np.validate_module_name(bad)
    assert err.value.var == "node_prep_kernel_modules"


def test_indicators():
    fs = "nodev\tsysfs\nnodev\toverlay\n\text4\n"
    assert np.indicator_present("overlay", False, fs) is True
    assert np.indicator_present("overlay", True, "nodev\tsysfs\n") is False
    assert np.indicator_present("br_netfilter", True, "") is True
    assert np.indicator_present("br_netfilter", False, fs) is False
