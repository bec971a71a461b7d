"""Card master keys: provincial-level SM4 / 3DES keys, per-card derivation, PSAM export, and the
authentication service for terminals without a PSAM (``iReadCardBas_HSM_Step1/Step2``).

The KMC holds, per province, one provincial key for each card key id and algorithm (SM4 for
third-generation cards, two-key 3DES for generation 2), wrapped under the storage key: either
generated here (a province running its own hierarchy) or derived from the ministry's root key
by the province factor when the ministry hands the root key over (CARD_SPEC §3). All
diversification is ``sscard.card.diversify`` (the same code the emulated card and PSAM run):

    provincial key --city factor--> city key --card factor (ATR)--> per-card key

Key ids are the card's (``sscard.emulator.testkeys.KeyId``): 09 internal authentication, 0A
external authentication / read (RKSSSE), 0B update, 0C PIN unblock, 0D PIN reload (the last two
are the secure-messaging keys of ``84 24``).

Step 1/2 [P]: the terminal sends the Step-1 fields (region | ATR | algorithm flag | card id |
internal process factor | internal data | external process factor | external data |
terminal |); the KMC answers ``internal check value (16 hex) | external cryptogram |``. The
cryptogram is the 8 bytes the card's ``00 82`` takes (16 hex; CARD_SPEC §5 lists 32 hex for
that field, which our card profile does not use).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from keymgmt import export_seal
from keymgmt.db import CallerRecord, CardMasterKeyRecord, TerminalBindingRecord
from keymgmt.errors import Conflict, KmcError, NotFound, PermissionDenied, RateLimited
from keymgmt.service import KeyManagementCentre, Principal, Role
from sscard.audit import AuditAction
from sscard.card import diversify as div
from sscard.card.auth import Authenticator, CardIdentity
from sscard.card.diversify import CardAlgorithm

PSAM_EXPORT_PURPOSE = "psam-provincial-keys"
#: card-key answers a terminal may ask per minute unless its binding says otherwise
DEFAULT_TERMINAL_RATE = 120
RATE_WINDOW = timedelta(minutes=1)
CARD_KEYS_PURPOSE = "card-keys"


class CardKeyId(enum.IntEnum):
    INTERNAL_AUTH = 0x09
    EXTERNAL_AUTH = 0x0A  # RKSSSE, the read key
    UPDATE = 0x0B
    PIN_UNBLOCK = 0x0C
    PIN_RELOAD = 0x0D


def _algorithm(value: CardAlgorithm | str) -> CardAlgorithm:
    if isinstance(value, CardAlgorithm):
        return value
    names = {"sm4": CardAlgorithm.SM4, "3des": CardAlgorithm.DES3, "des3": CardAlgorithm.DES3}
    try:
        return names[value.lower()]
    except KeyError:
        raise KmcError(f"card key algorithm must be sm4 or 3des, not {value!r}") from None


def _alg_name(alg: CardAlgorithm) -> str:
    return "sm4" if alg is CardAlgorithm.SM4 else "3des"


def key_check_value(key: bytes, alg: CardAlgorithm) -> str:
    """The conventional KCV: the first 3 bytes of the key encrypting zeros (public)."""
    return div.ecb_encrypt(key, bytes(alg.block_size), alg)[:3].hex().upper()


def _check_province(code: str) -> str:
    if len(code) != 2 or not code.isdigit():
        raise KmcError(f"province code must be 2 digits, got {code!r}")
    return code


def _check_region(region_code: str) -> str:
    if len(region_code) != 6 or not region_code.isdigit():
        raise KmcError(f"region code must be 6 digits, got {region_code!r}")
    return region_code


def _aad(province: str, key_id: int, alg: CardAlgorithm, version: int) -> bytes:
    return f"sscard-kmc/cardkey/v1\0{province}\0{key_id:02X}\0{_alg_name(alg)}\0{version}".encode()


def _check_region_prefix(prefix: str) -> str:
    if len(prefix) not in (2, 4, 6) or not prefix.isdigit():
        raise KmcError(f"a terminal region must be a 2-, 4- or 6-digit region code prefix "
                       f"(province, city, county), got {prefix!r}")
    return prefix


def card_subject(atr: bytes) -> str:
    """How events name one card: the SHA-256 of its ATR (the card factor), never the ATR."""
    return "card:" + hashlib.sha256(atr).hexdigest()


@dataclass(frozen=True)
class TerminalBinding:
    name: str
    regions: tuple[str, ...]
    terminal_id: str | None
    rate_per_minute: int


@dataclass(frozen=True)
class AuthAnswer:
    """What Step 2 needs: the internal-authentication check value and the external cryptogram."""

    internal_check: bytes
    external_cryptogram: bytes

    def step2_line(self) -> str:
        return f"{self.internal_check.hex().upper()}|{self.external_cryptogram.hex().upper()}|"


class CardKeyService:
    """Card master keys held by one KMC (its database and storage key)."""

    def __init__(self, kmc: KeyManagementCentre) -> None:
        self.kmc = kmc

    def _audited(self, actor: str, action: AuditAction, subject: str) -> Any:
        """The audit guard for administrative card-key operations."""
        return self.kmc.audit.operation(actor, action, subject)

    # -- master keys -----------------------------------------------------------------------
    def _store(self, province: str, key_id: int, alg: CardAlgorithm, key: bytes, by: str,
               action: str, **details: Any) -> str:
        storage = self.kmc.storage_key
        version = 1
        kcv = key_check_value(key, alg)
        try:
            with self.kmc._tx() as s:
                s.add(CardMasterKeyRecord(
                    province_code=province, key_id=key_id, usage=CardKeyId(key_id).name.lower(),
                    algorithm=_alg_name(alg), version=version, key_check_value=kcv,
                    wrapped_key=storage.wrap(key, _aad(province, key_id, alg, version)),
                    storage_key_id=storage.key_id, created_by=by,
                    created_at=self.kmc.clock()))
                self.kmc._event(s, by, action, f"{province}/{key_id:02X}/{_alg_name(alg)}",
                                kcv=kcv, **details)
        except IntegrityError:
            raise Conflict(f"province {province} already has a {_alg_name(alg)} key "
                           f"{key_id:02X}") from None
        return kcv

    def generate_master_keys(self, province_code: str, algorithms: list[str] | None = None,
                             *, by: str = "administrator") -> dict[str, str]:
        """Random provincial keys for every key id; returns ``{"09/sm4": KCV, ...}``."""
        province = _check_province(province_code)
        with self._audited(by, AuditAction.KMC_CARDKEY_GENERATE, province):
            return self._generate(province, algorithms, by)

    def _generate(self, province: str, algorithms: list[str] | None,
                  by: str) -> dict[str, str]:
        out = {}
        for name in algorithms or ["sm4", "3des"]:
            alg = _algorithm(name)
            for kid in CardKeyId:
                out[f"{kid:02X}/{_alg_name(alg)}"] = self._store(
                    province, kid, alg, secrets.token_bytes(16), by, "cardkey.generate")
        return out

    def import_root_key(self, province_code: str, key_id: int, algorithm: str, root_key: bytes,
                        *, by: str = "administrator", expected_kcv: str | None = None) -> str:
        """Take over the ministry's root key for ``key_id``: keep only the provincial key
        derived from it (province factor). ``expected_kcv``, if given, is checked first."""
        province = _check_province(province_code)
        alg = _algorithm(algorithm)
        if key_id not in CardKeyId.__members__.values():
            raise KmcError(f"unknown card key id {key_id:02X}")
        if len(root_key) != 16:
            raise KmcError(f"card root keys are 16 bytes, got {len(root_key)}")
        if expected_kcv is not None and not hmac.compare_digest(
                key_check_value(root_key, alg), expected_kcv.upper()):
            raise KmcError("the root key's check value does not match: mistyped or damaged")
        provincial = div.diversify(root_key, div.province_factor(province), alg)
        with self._audited(by, AuditAction.KMC_CARDKEY_IMPORT_ROOT,
                          f"{province}/{key_id:02X}/{algorithm}"):
            return self._store(province, key_id, alg, provincial, by, "cardkey.import_root",
                               root_kcv=key_check_value(root_key, alg))

    def list_master_keys(self) -> list[dict[str, Any]]:
        with self.kmc._tx() as s:
            return [{"province": r.province_code, "key_id": f"{r.key_id:02X}", "usage": r.usage,
                     "algorithm": r.algorithm, "version": r.version, "kcv": r.key_check_value}
                    for r in s.scalars(select(CardMasterKeyRecord).order_by(
                        CardMasterKeyRecord.province_code, CardMasterKeyRecord.algorithm,
                        CardMasterKeyRecord.key_id))]

    def _provincial_key(self, province: str, key_id: int, alg: CardAlgorithm) -> bytes:
        storage = self.kmc.storage_key
        with self.kmc._tx() as s:
            rec = s.scalar(select(CardMasterKeyRecord).where(
                CardMasterKeyRecord.province_code == province,
                CardMasterKeyRecord.key_id == key_id,
                CardMasterKeyRecord.algorithm == _alg_name(alg),
            ).order_by(CardMasterKeyRecord.version.desc()))
            if rec is None:
                raise NotFound(f"no {_alg_name(alg)} card master key {key_id:02X} for "
                               f"province {province}")
            key = storage.unwrap(rec.wrapped_key, _aad(province, key_id, alg, rec.version))
        if key_check_value(key, alg) != rec.key_check_value:
            raise KmcError(f"card master key {key_id:02X} fails its check value")
        return key

    def card_key(self, region_code: str, atr: bytes, key_id: int,
                 algorithm: CardAlgorithm) -> bytes:
        """The per-card key (in memory only; for the authentication service and sealed
        per-card exports)."""
        region = _check_region(region_code)
        return div.card_key(self._provincial_key(region[:2], key_id, algorithm), region, atr,
                            algorithm)

    # -- terminal bindings -----------------------------------------------------------------
    def bind_terminal(self, name: str, regions: list[str], *, terminal_id: str | None = None,
                      rate_per_minute: int = DEFAULT_TERMINAL_RATE,
                      by: str = "administrator") -> TerminalBinding:
        """Bind terminal caller ``name`` to its regions (and terminal id); replaces a binding.
        Until bound, a terminal gets no card-key answer at all."""
        prefixes = tuple(sorted({_check_region_prefix(r) for r in regions}))
        if not prefixes:
            raise KmcError("a terminal is bound to at least one region")
        if not 1 <= rate_per_minute <= 10_000:
            raise KmcError(f"rate per minute must be 1..10000, got {rate_per_minute}")
        if terminal_id is not None and not (terminal_id.isalnum() and len(terminal_id) <= 64):
            raise KmcError(f"terminal id must be 1-64 letters or digits, got {terminal_id!r}")
        now = self.kmc.clock()
        with self.kmc._tx() as s:
            caller = s.scalar(select(CallerRecord).where(CallerRecord.name == name))
            if caller is None or caller.role != Role.TERMINAL.value:
                raise NotFound(f"no terminal caller named {name!r}")
            rec = s.scalar(select(TerminalBindingRecord).where(
                TerminalBindingRecord.caller_name == name))
            if rec is None:
                rec = TerminalBindingRecord(caller_name=name, window_start=now, used=0,
                                            created_by=by, created_at=now)
                s.add(rec)
            rec.regions = ",".join(prefixes)
            rec.terminal_id = terminal_id
            rec.rate_per_minute = rate_per_minute
            self.kmc._event(s, by, "terminal.bind", name, regions=list(prefixes),
                            terminal_id=terminal_id, rate_per_minute=rate_per_minute)
        return TerminalBinding(name, prefixes, terminal_id, rate_per_minute)

    def terminal_binding(self, name: str) -> TerminalBinding | None:
        with self.kmc._tx() as s:
            rec = s.scalar(select(TerminalBindingRecord).where(
                TerminalBindingRecord.caller_name == name))
            if rec is None:
                return None
            return TerminalBinding(name, tuple(rec.regions.split(",")), rec.terminal_id,
                                   rec.rate_per_minute)

    def _admit(self, principal: Principal, operation: str, region_code: str, atr: bytes,
               terminal_id: str | None) -> None:
        """Role, binding and rate for one card-key answer; each refusal is recorded against
        the card and the terminal, and changes nothing."""
        try:
            KeyManagementCentre._require(principal, Role.TERMINAL, Role.RA)
            if principal.role is Role.TERMINAL:
                self._admit_terminal(principal, region_code, terminal_id)
        except (PermissionDenied, RateLimited) as exc:
            with self.kmc._tx() as s:
                self.kmc._event(s, principal.name, f"{operation}.refused", card_subject(atr),
                                region=region_code, terminal_id=terminal_id,
                                reason=str(exc)[:300])
            raise

    def _admit_terminal(self, principal: Principal, region_code: str,
                        terminal_id: str | None) -> None:
        binding = self.terminal_binding(principal.name)
        if binding is None:
            raise PermissionDenied(f"terminal {principal.name} is bound to no region; an "
                                   "administrator binds it (sscard kmc caller bind)")
        if not any(region_code.startswith(p) for p in binding.regions):
            raise PermissionDenied(f"terminal {principal.name} is bound to region(s) "
                                   f"{', '.join(binding.regions)}, not {region_code!r}")
        if binding.terminal_id is not None and terminal_id != binding.terminal_id:
            raise PermissionDenied(f"terminal {principal.name} is bound to terminal id "
                                   f"{binding.terminal_id}; the request names "
                                   f"{terminal_id or 'none'}")
        # one atomic conditional update per request: a new minute resets the count, else the
        # count rises only while under the limit (shared by every worker through the database)
        now = self.kmc.clock()
        table = TerminalBindingRecord
        with self.kmc._tx() as s:
            conn = s.connection()
            conn.execute(update(table).where(
                table.caller_name == principal.name,
                table.window_start <= now - RATE_WINDOW).values(window_start=now, used=0))
            admitted = conn.execute(update(table).where(
                table.caller_name == principal.name,
                table.used < table.rate_per_minute).values(used=table.used + 1)).rowcount
        if admitted != 1:
            raise RateLimited(f"terminal {principal.name} asked more than "
                              f"{binding.rate_per_minute} card-key answers this minute")

    def _card_event(self, principal: Principal, action: str, region_code: str, atr: bytes,
                    terminal_id: str | None, **details: Any) -> None:
        with self.kmc._tx() as s:
            self.kmc._event(s, principal.name, action, card_subject(atr), region=region_code,
                            terminal_id=terminal_id, **details)

    # -- terminal authentication service ---------------------------------------------------
    @staticmethod
    def _card_algorithm(flag: int) -> CardAlgorithm:
        try:
            return CardAlgorithm(flag)
        except ValueError:
            raise KmcError(f"algorithm flag {flag:02X} is not 01 (3DES) or 03 (SM4)") from None

    @staticmethod
    def _check_atr(atr: bytes) -> None:
        if len(atr) < 8:
            raise KmcError("ATR too short for a card factor (8 bytes)")

    def external_cryptogram(self, principal: Principal, *, region_code: str, atr: bytes,
                            algorithm_flag: int, challenge: bytes,
                            key_id: int = CardKeyId.EXTERNAL_AUTH,
                            terminal_id: str | None = None) -> bytes:
        """The 8 bytes a terminal sends in ``00 82 00 <key id>`` after GET CHALLENGE."""
        alg = self._card_algorithm(algorithm_flag)
        self._check_atr(atr)
        _check_region(region_code)
        self._admit(principal, "cardkey.external_auth", region_code, atr, terminal_id)
        if len(challenge) not in (8, 16):
            raise KmcError("external-authentication challenge must be 8 or 16 bytes")
        if key_id not in CardKeyId.__members__.values() or key_id == CardKeyId.INTERNAL_AUTH:
            raise KmcError(f"key {key_id:02X} is not an external-authentication key")
        cryptogram = div.external_auth_cryptogram(
            self.card_key(region_code, atr, key_id, alg), challenge, alg)
        self._card_event(principal, "cardkey.external_auth", region_code, atr, terminal_id,
                         key_id=f"{key_id:02X}")
        return cryptogram

    def internal_check(self, principal: Principal, *, region_code: str, atr: bytes,
                       algorithm_flag: int, process_factor: bytes, data: bytes,
                       terminal_id: str | None = None) -> bytes:
        """What a genuine card answers to ``00 88 00 00 10 <factor> <data>``."""
        alg = self._card_algorithm(algorithm_flag)
        self._check_atr(atr)
        _check_region(region_code)
        if len(process_factor) != 8 or len(data) != 8:
            raise KmcError("internal-authentication process factor and data are 8 bytes each")
        self._admit(principal, "cardkey.internal_auth", region_code, atr, terminal_id)
        answer = div.internal_auth_answer(
            self.card_key(region_code, atr, CardKeyId.INTERNAL_AUTH, alg),
            process_factor, data, alg)
        self._card_event(principal, "cardkey.internal_auth", region_code, atr, terminal_id)
        return answer

    def authenticate_card(self, principal: Principal, *, region_code: str, atr: bytes,
                          algorithm_flag: int, internal_factor: bytes, internal_data: bytes,
                          external_challenge: bytes,
                          external_key_id: int = CardKeyId.EXTERNAL_AUTH,
                          terminal_id: str | None = None) -> AuthAnswer:
        """Step 1 -> Step 2: the expected internal-authentication answer of a genuine card and
        the external-authentication cryptogram for ``external_challenge``."""
        internal = self.internal_check(
            principal, region_code=region_code, atr=atr, algorithm_flag=algorithm_flag,
            process_factor=internal_factor, data=internal_data, terminal_id=terminal_id)
        external = self.external_cryptogram(
            principal, region_code=region_code, atr=atr, algorithm_flag=algorithm_flag,
            challenge=external_challenge, key_id=external_key_id, terminal_id=terminal_id)
        return AuthAnswer(internal, external)

    def pin_command(self, principal: Principal, *, region_code: str, atr: bytes,
                    algorithm_flag: int, key_id: int, challenge: bytes, header: bytes,
                    new_pin: str, terminal_id: str | None = None) -> bytes:
        """Data of the secure-messaging ``84 24`` PIN unblock / reload command: the PIN block
        encrypted under the per-card key, then its 4-byte MAC (CARD_SPEC §3)."""
        self._check_atr(atr)
        _check_region(region_code)
        self._admit(principal, "cardkey.pin_command", region_code, atr, terminal_id)
        if key_id not in (CardKeyId.PIN_UNBLOCK, CardKeyId.PIN_RELOAD):
            raise KmcError(f"key {key_id:02X} is not a PIN unblock/reload key (0C, 0D)")
        if len(header) != 4 or header[:2] != b"\x84\x24":
            raise KmcError("header must be the 4 bytes CLA INS P1 P2 of 84 24 ..")
        try:
            alg = CardAlgorithm(algorithm_flag)
            block = div.pin_block(new_pin, alg)
        except ValueError as exc:
            raise KmcError(str(exc)) from None
        key = self.card_key(region_code, atr, key_id, alg)
        encrypted = div.ecb_encrypt(key, block, alg)
        lc = bytes([len(encrypted) + 4])
        mac = div.mac(key, challenge, header + lc + encrypted, alg)
        self._card_event(principal, "cardkey.pin_command", region_code, atr, terminal_id,
                         key_id=f"{key_id:02X}")
        return encrypted + mac

    def hsm_step(self, principal: Principal, step1_line: str) -> str:
        """``iReadCardBas_HSM_Step1`` output in, ``iReadCardBas_HSM_Step2`` pKey out."""
        fields = step1_line.split("|")
        if len(fields) < 9:
            raise KmcError(f"Step-1 output needs 9 '|'-separated fields, got {len(fields)}")
        region, atr_hex, flag, _card_id, if_hex, id_hex, _ef_hex, ed_hex, terminal = fields[:9]
        try:
            atr, ifac, idat, echal = (bytes.fromhex(x) for x in (atr_hex, if_hex, id_hex, ed_hex))
            flag_value = int(flag, 16)
        except ValueError:
            raise KmcError("Step-1 output: ATR, algorithm flag, factors and data must be hex"
                           ) from None
        return self.authenticate_card(
            principal, region_code=region, atr=atr, algorithm_flag=flag_value,
            internal_factor=ifac, internal_data=idat, external_challenge=echal,
            terminal_id=terminal or None,
        ).step2_line()

    # -- exports ---------------------------------------------------------------------------
    def export_psam(self, region_code: str, recipient_spki: bytes, *,
                    by: str = "administrator") -> bytes:
        """The provincial keys a PSAM for ``region_code``'s city holds, sealed for the PSAM
        personalisation station's SM2 key (``export_seal``)."""
        region = _check_region(region_code)
        with self._audited(by, AuditAction.KMC_CARDKEY_EXPORT_PSAM, region):
            return self._export_psam(region, recipient_spki, by)

    def _export_psam(self, region: str, recipient_spki: bytes, by: str) -> bytes:
        keys: dict[str, dict[str, str]] = {}
        for alg in CardAlgorithm:
            for kid in CardKeyId:
                try:
                    key = self._provincial_key(region[:2], kid, alg)
                except NotFound:
                    continue
                keys.setdefault(alg.name, {})[f"{kid:02X}"] = key.hex().upper()
        if not keys:
            raise NotFound(f"no card master keys for province {region[:2]}")
        payload = {"region_code": region, "province_code": region[:2], "keys": keys}
        sealed = export_seal.seal(payload, PSAM_EXPORT_PURPOSE, recipient_spki)
        with self.kmc._tx() as s:
            self.kmc._event(s, by, "cardkey.export_psam", region,
                            key_ids=sorted({k for v in keys.values() for k in v}),
                            algorithms=sorted(keys),
                            recipient_sha256=hashlib.sha256(recipient_spki).hexdigest())
        return sealed


class ServiceAuthenticator(Authenticator):
    """The card client's ``Authenticator`` backed by this KMC (in-process): what a terminal
    without a PSAM gets. A remote terminal calls the same operations over the KMC's HTTP API."""

    def __init__(self, service: CardKeyService, principal: Principal) -> None:
        self.service = service
        self.principal = principal

    def external_cryptogram(self, key_id: int, card: CardIdentity, challenge: bytes) -> bytes:
        return self.service.external_cryptogram(
            self.principal, region_code=card.region_code, atr=card.atr,
            algorithm_flag=card.algorithm.value, challenge=challenge, key_id=key_id)

    def internal_expected(self, card: CardIdentity, process_factor: bytes, data: bytes) -> bytes:
        return self.service.internal_check(
            self.principal, region_code=card.region_code, atr=card.atr,
            algorithm_flag=card.algorithm.value, process_factor=process_factor, data=data)

    def pin_command_data(self, key_id: int, card: CardIdentity, challenge: bytes,
                         header: bytes, pin: str) -> bytes:
        return self.service.pin_command(
            self.principal, region_code=card.region_code, atr=card.atr,
            algorithm_flag=card.algorithm.value, key_id=key_id, challenge=challenge,
            header=header, new_pin=pin)
