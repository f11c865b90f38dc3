"""Local processes for `city-gateway dev` and the test suite (Synapse, ...).

Nothing here runs in production: it starts real services from the development
environment so that a newcomer and the tests use the same stack.
"""

from __future__ import annotations

from devstack.synapse import (
    SynapseError,
    SynapseProcess,
    SynapseStartError,
    free_port,
    login,
    register_user,
)

__all__ = [
    "SynapseError",
    "SynapseProcess",
    "SynapseStartError",
    "free_port",
    "login",
    "register_user",
]
