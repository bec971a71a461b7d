"""The gateway for WSGI servers. ``sscard gateway serve`` runs ``GatewayAppFactory`` under
gunicorn (``sscard.serving``); any other WSGI server takes ``sscard.gateway.wsgi:app`` with
``SSCARD_GATEWAY_CONFIG`` naming the TOML configuration. The configuration's ``database_url``
(or ``SSCARD_GATEWAY_CHALLENGES``) is the database every worker shares: the replay memory of
signed requests and the cardholder challenges."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sscard.gateway.challenges import SqlChallengeStore
from sscard.gateway.config import load_config
from sscard.gateway.service import create_app


class GatewayAppFactory:
    """Builds the gateway app in one worker process (its own audit-log engine and keys); the
    replay memory and the cardholder challenges go through one database every worker shares."""

    def __init__(self, config_file: Path, challenges_url: str | None,
                 home: Path | None = None) -> None:
        self.config_file, self.challenges_url, self.home = config_file, challenges_url, home

    def __call__(self) -> Any:
        config = load_config(self.config_file)
        config.database_url = config.database_url or self.challenges_url
        if not config.database_url:
            logging.getLogger(__name__).warning(
                "no database_url: each worker keeps its own replay memory and challenges; run "
                "one worker or configure a shared database")
        recorder = None
        if self.home is not None and config.audit_url:
            from sscard.audit.scheduled import open_served_log

            # a served gateway's log gets signed checkpoints on a schedule, as the other
            # services' do, with the audit key of its data directory
            recorder = open_served_log(config.audit_url, self.home)
        return create_app(config, recorder=recorder,
                          challenges=SqlChallengeStore(config.database_url)
                          if config.database_url else None)


def __getattr__(name: str) -> Any:
    # ``app`` is built when a WSGI server asks for it, not when the factory is imported
    if name == "app":
        app = GatewayAppFactory(Path(os.environ["SSCARD_GATEWAY_CONFIG"]),
                                os.environ.get("SSCARD_GATEWAY_CHALLENGES"))()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
