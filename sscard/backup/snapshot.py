"""Making a backup: a consistent snapshot of a data directory, sealed with a passphrase.

What goes in, found by walking ``<home>`` (no knowledge of which package wrote what):

* SQLite databases (recognised by their file header, whatever their name: ``ca.db``,
  ``ra.db``, ``kmc.db``, ``audit.sqlite``) are copied with SQLite's online backup API, which
  reads one consistent snapshot while services keep writing; their ``-wal``/``-shm``/
  ``-journal`` side files are left out (the snapshot already holds the committed pages);
* PostgreSQL databases named by URL in any ``*.toml`` under ``home`` (and any given
  explicitly) are dumped with ``pg_dump --format=custom``;
* every other regular file (wrapped keys, secrets, ceremony state, configuration) as it is.

Each database is a consistent snapshot of itself; the set is not one atomic cut across
databases (SQLite and PostgreSQL share no transaction), which is why the snapshots are taken
in a fixed order with the audit log last: an operation recorded in another database is then
normally also in the audit snapshot.

The archive is a gzip'd tar whose first member, ``manifest.json``, lists every other member
with its SHA-256, size and mode; the tar is then sealed by :mod:`sscard.backup.archive`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sscard.backup import archive, postgres
from sscard.backup.errors import BackupError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "sscard-backup-manifest"
HOME_PREFIX = "home/"
PG_PREFIX = "postgresql/"
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
AUDIT_DB_NAMES = ("audit.sqlite", "audit.db")


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    members: list[dict[str, Any]]
    skipped: list[str]

    def count(self, kind: str) -> int:
        return sum(1 for m in self.members if m["kind"] == kind)


def is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def sqlite_snapshot(source: Path, target: Path) -> None:
    """One consistent copy of a live SQLite database (readers and writers may continue)."""
    try:
        src = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True, timeout=60)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open SQLite database {source}: {exc}") from None
    dst = sqlite3.connect(target)
    try:
        # pages=-1 copies everything in one step under one read transaction: a consistent cut.
        src.backup(dst, pages=-1)
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup of {source} failed: {exc}") from None
    finally:
        dst.close()
        src.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _walk(home: Path) -> tuple[list[Path], list[str]]:
    """Regular files under ``home`` (sorted), and what was skipped with why."""
    files: list[Path] = []
    skipped: list[str] = []
    for root, dirs, names in os.walk(home, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            rel = path.relative_to(home).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                skipped.append(f"{rel}: symbolic link (not followed)")
            elif not stat.S_ISREG(mode):
                skipped.append(f"{rel}: not a regular file")
            elif name.endswith(SQLITE_SIDE_FILES) and is_sqlite(
                    path.with_name(name[: name.rfind("-")])):
                continue  # a live database's WAL/journal: its snapshot already holds the data
            else:
                files.append(path)
    return files, skipped


def _order(files: list[Path], home: Path) -> list[Path]:
    """Snapshot the audit log last (see the module docstring)."""
    return sorted(files, key=lambda p: (p.name in AUDIT_DB_NAMES, p.relative_to(home).parts))


def create_backup(
    home: Path,
    out: Path,
    passphrase: bytes,
    *,
    extra_database_urls: Iterable[str] = (),
    scrypt_n: int = archive.DEFAULT_SCRYPT_N,
) -> BackupSummary:
    """Write the sealed backup of ``home`` to ``out`` (which must not exist yet)."""
    home = Path(home)
    out = Path(out)
    if not home.is_dir():
        raise BackupError(f"no data directory at {home}")
    if out.exists():
        raise BackupError(f"{out} exists; refusing to overwrite a backup")
    if out.resolve().is_relative_to(home.resolve()):
        raise BackupError(f"write the backup outside the data directory (not {out})")
    databases = postgres.databases_in_config(home)
    seen = {d.url for d in databases}
    for i, url in enumerate(extra_database_urls):
        if not postgres.is_postgres_url(url):
            raise BackupError(f"--database-url must be a PostgreSQL URL, not {url!r}")
        if url not in seen:
            databases.append(postgres.PgDatabase(f"extra:{i}", url))
            seen.add(url)
    files, skipped = _walk(home)
    with tempfile.TemporaryDirectory(prefix="sscard-backup-") as tmp:
        stage = Path(tmp)
        members: list[dict[str, Any]] = []
        staged: list[tuple[str, Path]] = []
        for n, db in enumerate(databases):
            dump_path = stage / f"pg-{n}.dump"
            postgres.dump(db, dump_path)
            name = f"{PG_PREFIX}{n}.dump"
            config_file = db.label.partition(":")[0]
            members.append({"name": name, "kind": "postgresql", "label": db.label,
                            "config_file": config_file, "url": db.redacted,
                            "sha256": _sha256(dump_path), "size": dump_path.stat().st_size,
                            "mode": 0o600})
            staged.append((name, dump_path))
        for n, path in enumerate(_order(files, home)):
            rel = path.relative_to(home).as_posix()
            copy = stage / f"f-{n}"
            if is_sqlite(path):
                sqlite_snapshot(path, copy)
                kind = "sqlite"
            else:
                try:
                    shutil.copyfile(path, copy)
                except OSError as exc:
                    raise BackupError(f"cannot read {rel}: {exc.strerror}") from None
                kind = "file"
            name = HOME_PREFIX + rel
            members.append({"name": name, "kind": kind, "sha256": _sha256(copy),
                            "size": copy.stat().st_size,
                            "mode": stat.S_IMODE(path.stat().st_mode)})
            staged.append((name, copy))
        manifest = json.dumps({
            "format": MANIFEST_FORMAT, "version": 1,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "members": members, "skipped": skipped,
        }, indent=1, ensure_ascii=False).encode()
        tar_path = stage / "backup.tar.gz"
        with tarfile.open(tar_path, "w:gz", compresslevel=6) as tar:
            _add_bytes(tar, MANIFEST, manifest)
            for name, path in staged:
                info = tar.gettarinfo(str(path), arcname=name)
                info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
        partial = out.with_name(out.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as dst, tar_path.open("rb") as src:
                archive.encrypt_stream(src, dst, passphrase, scrypt_n=scrypt_n)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(partial, out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return BackupSummary(out, members, skipped)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))
