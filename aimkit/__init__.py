"""Plumbing shared by the detector, the matcher and the tools around them.

A leaf package: it imports neither ``detector`` nor ``matcher`` (an import-linter contract),
so both programs can stand on it.

- :mod:`aimkit.http`: the health, metrics (and, over TLS, webhook) server, hardened against
  slow and greedy clients, with named checks behind ``/healthz`` and ``/readyz``.
- :mod:`aimkit.logs`: one log format (``text`` key=value lines or ``json``), one ``extra``
  convention.
- :mod:`aimkit.kube`: one kubeconfig resolution order and a small Kubernetes API client.
- :mod:`aimkit.build`: the version, ``--version`` and the ``*_build_info`` metric.
"""
