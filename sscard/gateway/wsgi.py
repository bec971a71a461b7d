"""The gateway for WSGI servers: ``gunicorn 'sscard.gateway.wsgi:app'`` with
``SSCARD_GATEWAY_CONFIG`` naming the TOML configuration. The configuration's ``database_url``
(or, for older deployments, ``SSCARD_GATEWAY_CHALLENGES``) is the database every worker shares:
the replay memory of signed requests and the cardholder challenges."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sscard.gateway.challenges import SqlChallengeStore
from sscard.gateway.config import load_config
from sscard.gateway.service import create_app

_config = load_config(Path(os.environ["SSCARD_GATEWAY_CONFIG"]))
_config.database_url = _config.database_url or os.environ.get("SSCARD_GATEWAY_CHALLENGES")
if not _config.database_url:
    logging.getLogger(__name__).warning(
        "no database_url: each worker keeps its own replay memory and challenges; run one "
        "worker or configure a shared database")
app = create_app(
    _config,
    challenges=SqlChallengeStore(_config.database_url) if _config.database_url else None,
)
