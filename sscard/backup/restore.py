"""Reading a backup: verify it completely, or restore it into a fresh data directory.

Both go through one path: open the sealed container (wrong passphrase and any alteration are
refused there), then unpack every member while hashing it against the manifest, refusing
unlisted, missing, duplicated or unsafe members, then check each SQLite snapshot with
``PRAGMA integrity_check`` and each PostgreSQL dump with ``pg_restore --list``. A restore
unpacks into a staging directory beside the target and renames it into place only when all of
that, and the PostgreSQL restores, succeeded: a failed restore leaves no half-written home.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import tarfile
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sscard.backup import archive, postgres
from sscard.backup.errors import BackupError, BackupIntegrityError, RestoreTargetError
from sscard.backup.snapshot import HOME_PREFIX, MANIFEST, MANIFEST_FORMAT, PG_PREFIX


@dataclass(frozen=True)
class BackupReport:
    created_at: str
    members: list[dict[str, Any]]
    skipped: list[str]
    #: PostgreSQL label -> entries in its dump's table of contents
    pg_entries: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(1 for m in self.members if m["kind"] == kind)

    @property
    def pg_labels(self) -> list[str]:
        return [m["label"] for m in self.members if m["kind"] == "postgresql"]


def _decrypt_to(backup: Path, passphrase: bytes, target: Path) -> None:
    try:
        src = backup.open("rb")
    except OSError as exc:
        raise BackupError(f"cannot read backup {backup}: {exc.strerror}") from None
    with src, target.open("wb") as dst:
        archive.decrypt_stream(src, dst, passphrase)


def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return (not p.is_absolute() and ".." not in p.parts and name == p.as_posix()
            and (name.startswith(HOME_PREFIX) or name.startswith(PG_PREFIX))
            and len(p.parts) >= 2)


def _read_manifest(tar: tarfile.TarFile) -> tuple[tarfile.TarInfo, dict[str, Any]]:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise BackupIntegrityError("the backup's first member is not its manifest")
    fh = tar.extractfile(first)
    assert fh is not None
    try:
        manifest = json.loads(fh.read())
        if manifest["format"] != MANIFEST_FORMAT or manifest["version"] != 1:
            raise BackupIntegrityError("unknown manifest format or version")
        members = manifest["members"]
        for m in members:
            if not isinstance(m["name"], str) or not _safe_name(m["name"]):
                raise BackupIntegrityError(f"manifest names an unsafe member {m['name']!r}")
            int(m["size"])
            int(m["mode"])
            bytes.fromhex(m["sha256"])
            if m["kind"] not in ("sqlite", "file", "postgresql"):
                raise BackupIntegrityError(f"manifest member {m['name']} has unknown kind")
    except BackupIntegrityError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupIntegrityError(f"the manifest is malformed: {exc!r}") from None
    names = [m["name"] for m in members]
    if len(set(names)) != len(names):
        raise BackupIntegrityError("the manifest lists a member twice")
    return first, manifest


def _unpack(tar_path: Path, home_dir: Path, pg_dir: Path) -> tuple[dict[str, Any], dict[str,
                                                                                          Path]]:
    """Unpack and check every member; returns the manifest and member name -> written path."""
    written: dict[str, Path] = {}
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            manifest_info, manifest = _read_manifest(tar)
            expected = {m["name"]: m for m in manifest["members"]}
            for info in tar:
                if info is manifest_info:
                    continue
                entry = expected.get(info.name)
                if entry is None:
                    raise BackupIntegrityError(f"member {info.name!r} is not in the manifest")
                if info.name in written:
                    raise BackupIntegrityError(f"member {info.name!r} appears twice")
                if not info.isfile():
                    raise BackupIntegrityError(f"member {info.name!r} is not a regular file")
                base = home_dir if info.name.startswith(HOME_PREFIX) else pg_dir
                dest = base.joinpath(*PurePosixPath(info.name).parts[1:])
                dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                src = tar.extractfile(info)
                assert src is not None
                digest = hashlib.sha256()
                size = 0
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for block in iter(lambda: src.read(1 << 20), b""):  # noqa: B023
                        digest.update(block)
                        size += len(block)
                        out.write(block)
                if digest.hexdigest() != entry["sha256"] or size != int(entry["size"]):
                    raise BackupIntegrityError(
                        f"member {info.name} does not match its SHA-256 in the manifest")
                os.chmod(dest, int(entry["mode"]) & 0o777)
                written[info.name] = dest
    except tarfile.TarError as exc:
        raise BackupIntegrityError(f"the backup's archive is damaged: {exc}") from None
    missing = sorted(set(expected) - set(written))
    if missing:
        raise BackupIntegrityError(f"members listed in the manifest are missing: "
                                   f"{', '.join(missing)}")
    return manifest, written


def _check_sqlite(path: Path, name: str) -> None:
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupIntegrityError(f"SQLite snapshot {name} does not open: {exc}") from None
    if result != ["ok"]:
        raise BackupIntegrityError(f"SQLite snapshot {name} fails integrity_check: "
                                   f"{'; '.join(result[:5])}")


def _check_members(manifest: dict[str, Any], written: Mapping[str, Path]) -> dict[str, int]:
    pg_entries: dict[str, int] = {}
    for m in manifest["members"]:
        if m["kind"] == "sqlite":
            _check_sqlite(written[m["name"]], m["name"])
        elif m["kind"] == "postgresql":
            pg_entries[m["label"]] = postgres.check_dump(written[m["name"]], m["label"])
    return pg_entries


def _report(manifest: dict[str, Any], pg_entries: dict[str, int]) -> BackupReport:
    return BackupReport(str(manifest.get("created_at", "")), list(manifest["members"]),
                        list(manifest.get("skipped", [])), pg_entries)


def verify_backup(backup: Path, passphrase: bytes) -> BackupReport:
    """Check a backup end to end without restoring it; raises on any problem."""
    with tempfile.TemporaryDirectory(prefix="sscard-verify-") as tmp:
        work = Path(tmp)
        tar_path = work / "backup.tar.gz"
        _decrypt_to(Path(backup), passphrase, tar_path)
        manifest, written = _unpack(tar_path, work / "home", work / "pg")
        return _report(manifest, _check_members(manifest, written))


def _check_target(target: Path) -> None:
    if target.exists():
        if not target.is_dir():
            raise RestoreTargetError(f"restore target {target} exists and is not a directory")
        if any(target.iterdir()):
            raise RestoreTargetError(f"restore target {target} is not empty: restore only into "
                                     "a fresh data directory")


def _lookup(data: Any, keys: list[str]) -> Any:
    for key in keys:
        data = data[int(key)] if isinstance(data, list) else data[key]
    return data


def _repoint_config(config: Path, keys: list[str], new_url: str, label: str) -> None:
    """Make the restored configuration name the database the dump went into."""
    text = config.read_text(encoding="utf-8")
    old = _lookup(tomllib.loads(text), keys)
    updated = text.replace(json.dumps(old), json.dumps(new_url)).replace(f"'{old}'",
                                                                         json.dumps(new_url))
    if _lookup(tomllib.loads(updated), keys) != new_url:
        raise BackupError(f"could not point {label} at the restored database (the URL is "
                          "written in a form this tool does not rewrite): edit it by hand")
    config.write_text(updated, encoding="utf-8")


def restore_backup(
    backup: Path,
    passphrase: bytes,
    target: Path,
    databases: Mapping[str, str] | None = None,
) -> BackupReport:
    """Restore into ``target`` (absent or empty). ``databases`` maps each PostgreSQL label of
    the backup (``<config file>:<key>``) to the URL of an empty database to restore it into;
    the restored configuration is changed to name that URL."""
    target = Path(target)
    databases = dict(databases or {})
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.restoring-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    try:
        with tempfile.TemporaryDirectory(prefix="sscard-restore-") as tmp:
            work = Path(tmp)
            tar_path = work / "backup.tar.gz"
            _decrypt_to(Path(backup), passphrase, tar_path)
            manifest, written = _unpack(tar_path, staging, work / "pg")
            pg_members = [m for m in manifest["members"] if m["kind"] == "postgresql"]
            labels = [m["label"] for m in pg_members]
            unmapped = [label for label in labels if label not in databases]
            unknown = sorted(set(databases) - set(labels))
            if unmapped:
                raise RestoreTargetError(
                    "the backup holds PostgreSQL databases; name an empty target for each with "
                    "--database LABEL=URL: " + ", ".join(unmapped))
            if unknown:
                raise RestoreTargetError(f"no PostgreSQL database labelled {', '.join(unknown)} "
                                         f"in this backup (it has: {', '.join(labels) or 'none'})")
            pg_entries = _check_members(manifest, written)
            for m in pg_members:
                postgres.require_empty(databases[m["label"]], m["label"])
            for m in pg_members:
                postgres.restore(written[m["name"]], databases[m["label"]], m["label"])
                config_file, _, keys = m["label"].partition(":")
                config = staging / config_file
                if config.is_file() and keys:
                    _repoint_config(config, keys.split("."), databases[m["label"]], m["label"])
        _check_target(target)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _report(manifest, pg_entries)
