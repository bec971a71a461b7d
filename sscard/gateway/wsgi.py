"""The gateway for WSGI servers: ``gunicorn 'sscard.gateway.wsgi:app'`` with
``SSCARD_GATEWAY_CONFIG`` naming the TOML configuration (and ``SSCARD_GATEWAY_CHALLENGES`` a
database URL shared by the workers for cardholder challenges)."""

from __future__ import annotations

import os
from pathlib import Path

from sscard.gateway.challenges import SqlChallengeStore
from sscard.gateway.config import load_config
from sscard.gateway.service import create_app

_challenges_url = os.environ.get("SSCARD_GATEWAY_CHALLENGES")
app = create_app(
    load_config(Path(os.environ["SSCARD_GATEWAY_CONFIG"])),
    challenges=SqlChallengeStore(_challenges_url) if _challenges_url else None,
)
