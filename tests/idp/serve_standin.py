"""Run the provider under gunicorn (``sscard.serving``) with part A's token classes stood in
(see provider_rig): ``python -m tests.idp.serve_standin DB_URL PORT``."""

from __future__ import annotations

import sys
from typing import Any

from sscard.idp.provider import Provider, ProviderConfig, create_app
from sscard.idp.store import IdpStore
from sscard.serving import ServeOptions, run
from tests.idp.provider_rig import ContractValidator, StandInNonces, StandInToken


def main() -> None:
    db_url, port = sys.argv[1], int(sys.argv[2])

    def factory() -> Any:  # in each worker, after the fork
        nonces = StandInNonces()
        return create_app(Provider(ProviderConfig(issuer=f"http://127.0.0.1:{port}"),
                                   IdpStore(db_url), nonces, ContractValidator(nonces, None),
                                   StandInToken.from_json))

    factory()  # tables, secrets and the first key before the workers start
    run(factory, ServeOptions(port=port, workers=2, threads=2), name="idp")


if __name__ == "__main__":
    main()
