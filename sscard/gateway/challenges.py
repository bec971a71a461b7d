"""Cardholder authentication challenges: one-time, short-lived and bound to the relying system.

The text the card signs names the gateway's purpose, the relying system, the challenge id, a
random value and the expiry, so a signature made for one system (or one login) is worth nothing
for another. A challenge is consumed by its first answer, right or wrong.
"""

from __future__ import annotations

import abc
import base64
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from sscard.gateway.errors import GatewayError
from sscard.sqlschema import UTCDateTime, create_all_concurrently, make_engine

PREFIX = "SSCARD-CARDHOLDER-AUTH-V1"


@dataclass(frozen=True)
class Challenge:
    challenge_id: str
    system: str
    to_sign: bytes
    expires_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "challenge_id": self.challenge_id,
            "to_sign": base64.b64encode(self.to_sign).decode(),
            "expires_at": self.expires_at.isoformat(),
        }


def new_challenge(system: str, seconds: float, now: datetime | None = None) -> Challenge:
    now = now or datetime.now(UTC)
    expires = (now + timedelta(seconds=seconds)).replace(microsecond=0)
    cid = secrets.token_hex(16)
    nonce = base64.b64encode(secrets.token_bytes(32)).decode()
    text = "\n".join([PREFIX, f"system={system}", f"challenge={cid}", f"nonce={nonce}",
                      f"expires={expires.strftime('%Y-%m-%dT%H:%M:%SZ')}"])
    return Challenge(cid, system, text.encode(), expires)


class ChallengeStore(abc.ABC):
    """Issued challenges. ``take`` returns a challenge once, and only to its own system."""

    @abc.abstractmethod
    def put(self, challenge: Challenge) -> None: ...

    @abc.abstractmethod
    def _pop(self, challenge_id: str) -> tuple[Challenge | None, bool]:
        """The challenge and whether it had been used before (it is marked used now)."""

    def take(self, challenge_id: str, system: str, now: datetime | None = None) -> Challenge:
        challenge, used = self._pop(challenge_id)
        if challenge is None:
            raise GatewayError("CHALLENGE_UNKNOWN", "no such challenge", 404)
        if challenge.system != system:
            raise GatewayError("CHALLENGE_WRONG_SYSTEM",
                               "the challenge was issued to another relying system", 403)
        if used:
            raise GatewayError("CHALLENGE_REPLAYED",
                               "the challenge was already answered; ask for a new one", 409)
        if (now or datetime.now(UTC)) > challenge.expires_at:
            raise GatewayError("CHALLENGE_EXPIRED",
                               f"the challenge expired at {challenge.expires_at.isoformat()}",
                               410)
        return challenge


class MemoryChallengeStore(ChallengeStore):
    """For one process (tests, the embedded default, a single worker)."""

    def __init__(self, keep_used_seconds: float = 3600) -> None:
        self._items: dict[str, tuple[Challenge, bool, float]] = {}
        self._lock = threading.Lock()
        self._keep = keep_used_seconds

    def put(self, challenge: Challenge) -> None:
        with self._lock:
            now = time.monotonic()
            if len(self._items) > 100_000:
                self._items = {k: v for k, v in self._items.items() if v[2] > now}
            self._items[challenge.challenge_id] = (challenge, False, now + self._keep)

    def _pop(self, challenge_id: str) -> tuple[Challenge | None, bool]:
        with self._lock:
            item = self._items.get(challenge_id)
            if item is None:
                return None, False
            self._items[challenge_id] = (item[0], True, item[2])
            return item[0], item[1]


_metadata = sa.MetaData()
_table = sa.Table(
    "gateway_challenges", _metadata,
    sa.Column("challenge_id", sa.String(64), primary_key=True),
    sa.Column("system", sa.String(200), nullable=False),
    sa.Column("to_sign", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("used", sa.Boolean, nullable=False, default=False),
)


class SqlChallengeStore(ChallengeStore):
    """Shared by every worker process through one database (SQLite file or PostgreSQL); the
    one-time rule is an atomic UPDATE ... WHERE used = false."""

    def __init__(self, url: str) -> None:
        # every transaction here writes (put, or claim the challenge), so each takes SQLite's
        # write lock at BEGIN; workers queue on a busy database rather than fail
        self.engine = make_engine(url, immediate=True)
        create_all_concurrently(_metadata, self.engine)

    def put(self, challenge: Challenge) -> None:
        with self.engine.begin() as conn:
            conn.execute(_table.insert().values(
                challenge_id=challenge.challenge_id, system=challenge.system,
                to_sign=challenge.to_sign, expires_at=challenge.expires_at, used=False))

    def _pop(self, challenge_id: str) -> tuple[Challenge | None, bool]:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(_table).where(
                _table.c.challenge_id == challenge_id)).mappings().one_or_none()
            if row is None:
                return None, False
            claimed = conn.execute(_table.update().where(
                (_table.c.challenge_id == challenge_id) & (_table.c.used.is_(False))
            ).values(used=True)).rowcount
        return Challenge(row["challenge_id"], row["system"], bytes(row["to_sign"]),
                         row["expires_at"]), claimed == 0
