#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Generate the kubeadm cluster secrets once, into one 0600 file on the controller."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kubeadm_secrets
short_description: Generate kubeadm's join token, certificate key and cluster CA once
description:
  - Writes a YAML file with C(token) (bootstrap token), C(certificate_key) (encrypts the
    control-plane certificates kubeadm uploads), C(ca_cert) and C(ca_key) (the cluster CA, so
    every join configuration can pin the CA hash before the cluster exists).
  - The file is created with mode 0600 in a 0700 directory, with O_EXCL, and never rewritten;
    if it exists (plain or encrypted with ansible-vault) the module changes nothing.
  - Returns no secret. Read the file with C(ansible.builtin.include_vars) and C(no_log).
  - Runs on the controller; needs the C(cryptography) package (an ansible-core dependency).
options:
  path:
    description: File to create, for example C(<kubeflat_render_dir>/kubeadm/secrets.yml).
    type: path
    required: true
  ca_common_name:
    description: Common name of the generated CA.
    type: str
    default: kubernetes
author: kubeflat contributors (@kubeflat)
"""

EXAMPLES = r"""
- name: Generate the cluster secrets once
  kubeflat.cluster.kubeadm_secrets:
    path: "{{ kubeflat_render_dir }}/kubeadm/secrets.yml"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
path:
  description: The secrets file.
  returned: always
  type: str
created:
  description: Whether the file was (or in check mode would be) created.
  returned: always
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_kubeadm import (
    generate_ca, generate_certificate_key, generate_token)


def _render(token, cert_key, ca_cert, ca_key):
    def block(text):
        return "".join("  %s\n" % line for line in text.strip().splitlines())
    return ("---\n# kubeflat kubeadm secrets: generated once; keep private "
            "(ansible-vault encrypt is fine)\n"
            "token: %s\ncertificate_key: %s\nca_cert: |\n%sca_key: |\n%s"
            % (token, cert_key, block(ca_cert), block(ca_key)))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            ca_common_name=dict(type="str", default="kubernetes"),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    result = dict(changed=False, path=path, created=False)
    if os.path.exists(path):
        module.exit_json(**result)
    result.update(changed=True, created=True,
                  diff={"before": {"path": path, "state": "absent"},
                        "after": {"path": path, "state": "file", "mode": "0600"}})
    if module.check_mode:
        module.exit_json(**result)
    directory = os.path.dirname(path)
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        try:
            ca_cert, ca_key = generate_ca(module.params["ca_common_name"])
        except ImportError as exc:
            module.fail_json(msg="kubeflat.cluster.kubeadm_secrets needs the Python package "
                             "'cryptography' on the controller: %s" % exc, **result)
        text = _render(generate_token(), generate_certificate_key(),
                       ca_cert.decode(), ca_key.decode())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    except OSError as exc:
        module.fail_json(msg="cannot write %s: %s" % (path, exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
