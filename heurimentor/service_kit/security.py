"""The token policy of both services: which secrets are acceptable and what a token may do.

A token has a scope (``read`` < ``write`` < ``admin``: each includes the ones before it) and may be
limited to some resources (``fnmatch`` patterns over job names on the TSM, mixture names on the DMU),
so a leaked trainer token can post metrics for its own job and nothing else.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

Scope = Literal["read", "write", "admin"]
SCOPE_RANK: dict[str, int] = {"read": 0, "write": 1, "admin": 2}

# Compared after stripping and lower-casing: "CHANGEME", "changeme " and "ChangeMe" are one placeholder.
PLACEHOLDER_SECRETS = frozenset(
    "x xxx changeme change-me change_me password passw0rd secret token dev dev-token demo demo-token test test-token "
    "admin default example placeholder none null todo replace-me s3cret letmein 12345678 123456".split()
) | {""}
MIN_SECRET_LENGTH = 24
# Shannon estimate over the secret's own characters times its length. secrets.token_urlsafe(32)
# scores ~200 bits and token_hex(16) ~115; "passwordpasswordpassword" scores 66.
MIN_SECRET_BITS = 96.0


class WeakSecret(ValueError):
    """A configured token is a placeholder, too short or too regular to be a random secret."""


def estimated_bits(value: str) -> float:
    counts = Counter(value)
    per_char = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values()) if value else 0.0
    return per_char * len(value)


def check_secret(value: str, *, what: str) -> None:
    """Raise ``WeakSecret`` naming ``what`` (the setting) unless ``value`` looks like a long random secret."""
    if value.strip().lower() in PLACEHOLDER_SECRETS:
        raise WeakSecret(f"{what} is a placeholder; set a random secret, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    if value != value.strip() or any(c.isspace() for c in value):
        raise WeakSecret(f"{what} contains whitespace; a bearer token is one word")
    if len(value) < MIN_SECRET_LENGTH:
        raise WeakSecret(f"{what} has {len(value)} characters; at least {MIN_SECRET_LENGTH} random ones (secrets.token_urlsafe(32))")
    bits = estimated_bits(value)
    if bits < MIN_SECRET_BITS:
        raise WeakSecret(
            f"{what} looks too regular to be random (about {bits:.0f} bits, at least {MIN_SECRET_BITS:.0f}); use secrets.token_urlsafe(32)"
        )


class TokenSpec(BaseModel):
    """One bearer token in ``tokens:``; the secret comes by env or a mounted file, never from git."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="who holds it (logs, 403 messages)")
    secret: SecretStr
    scope: Scope = "read"
    resources: list[str] | None = Field(
        default=None, description="fnmatch patterns of the jobs (TSM) or mixtures (DMU) its writes may touch; unset: all"
    )


@dataclass(frozen=True)
class Principal:
    """Who a request's bearer token belongs to."""

    name: str
    scope: str
    resources: tuple[str, ...] | None

    def allows(self, scope: str, resource: str | None = None) -> bool:
        if SCOPE_RANK[self.scope] < SCOPE_RANK[scope]:
            return False
        if resource is None or self.resources is None or self.scope == "admin":
            return True
        return any(fnmatchcase(resource, pattern) for pattern in self.resources)


@dataclass(frozen=True)
class TokenPolicy:
    """The resolved policy: the known tokens and whether anonymous reads and writes are allowed."""

    tokens: tuple[tuple[bytes, Principal], ...]
    reads_need_token: bool
    writes_need_token: bool

    def authenticate(self, presented: str | None) -> Principal | None:
        if not presented:
            return None
        given = presented.encode()
        found = None
        for secret, principal in self.tokens:  # compare against every token: timing names none of them
            if secrets.compare_digest(given, secret):
                found = principal
        return found


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    kind, _, value = authorization.partition(" ")
    return value.strip() if kind.lower() == "bearer" and value.strip() else None
