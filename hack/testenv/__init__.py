"""Real servers on loopback for tests and the developer loop: PostgreSQL, Prometheus, a Kubernetes control plane.

`python -m hack.testenv cluster-up|cluster-down|status` drives the control plane from a shell;
tests/conftest.py drives all three as pytest fixtures.
"""
