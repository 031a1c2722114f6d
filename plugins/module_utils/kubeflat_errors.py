# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error shape of kubeflat's input validation: variable, value, reason.

Every builder refuses bad input with a subclass of :class:`InputError`, so modules and filters
can report any of them the same way (``str()`` names the variable, the value and the reason).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class InputError(ValueError):
    """An input that cannot be used; ``str()`` is ``var=value: reason``."""

    def __init__(self, var, value, reason):
        self.var = var
        self.value = value
        self.reason = reason
        super(InputError, self).__init__("%s=%r: %s" % (var, value, reason))
