"""Proof that a health report comes from the check task recovery started (DESIGN section 3.9).

Recovery derives a secret per check attempt from a key only it holds, passes the secret to that check
task in its StartTask overrides (the decision on the stream carries only the secret's SHA-256), and the
agent signs its report with it. Anyone may write to the stream; nobody else can sign.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

PROOF_FIELD = "proof"


def check_secret(key: bytes, check_key: str) -> str:
    """The secret for one check attempt: HMAC-SHA256(key, check_key), hex."""
    return hmac.new(key, check_key.encode(), hashlib.sha256).hexdigest()


def secret_digest(secret: str) -> str:
    """What the stream may carry about a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def canonical(data: Mapping[str, Any]) -> bytes:
    """The signed bytes: the payload without its proof, keys sorted, compact."""
    body = {k: v for k, v in data.items() if k != PROOF_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode()


def report_proof(secret: str, data: Mapping[str, Any]) -> str:
    return hmac.new(secret.encode(), canonical(data), hashlib.sha256).hexdigest()


def verify_report(secret: str, data: Mapping[str, Any]) -> bool:
    given = data.get(PROOF_FIELD)
    return isinstance(given, str) and hmac.compare_digest(given, report_proof(secret, data))
