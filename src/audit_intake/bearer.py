"""Who may post: the ``Authorization: Bearer`` header kube-apiserver sends from its kubeconfig.

The presented token is hashed and compared with every accepted hash in constant time, so
neither the answer's timing nor any log line tells how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Final

from audit_intake.config import AcceptedToken

UNAUTHENTICATED: Final = "unauthenticated"
"""No ``Authorization: Bearer <token>`` header at all (or another scheme)."""
MISMATCHED: Final = "wrong_token"
"""A bearer token that is not (or no longer) accepted."""


def refusal(authorization: str | None, accepted: Iterable[AcceptedToken], now: float) -> str:
    """Why a request with this ``Authorization`` value is refused, or "" when it may post."""
    scheme, _, presented = (authorization or "").strip().partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        return UNAUTHENTICATED
    # Headers arrive decoded as Latin-1: encoding back gives the bytes that were sent.
    digest = hashlib.sha256(presented.encode("latin-1")).hexdigest()
    matched = False
    for token in accepted:  # no early exit: every accepted hash is compared
        same = hmac.compare_digest(digest, token.sha256)
        matched |= same and (token.expires is None or now < token.expires)
    return "" if matched else MISMATCHED
