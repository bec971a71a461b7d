"""Province-scale run: N SM2 cardholder certificates into PostgreSQL through the CA's batch path,
then the CRL with 10% revoked and OCSP against that database.

    python bench/scale.py [--count N] [--workers W] [--db URL] [--revoked-share 0.1]

Without ``--db`` a private PostgreSQL 15 cluster is started in a temporary directory (as the
postgres OS user when run as root) with PostgreSQL's durable defaults (fsync and synchronous
commit on), and removed at the end. Prints rates beside a reference measured in the same run
(raw SM2 signatures per second of the CA key on the same number of processes: the ceiling of
any issuance path), peak memory, database size, and the projection for 16,130,000 cards
(Fujian's card count in 2010).

Setup that is not the CA's work is said to be so: the holders' public keys come from a pool of
1,000 (the cards generate them in reality), and all but a timed sample of the revocations are
marked by one SQL UPDATE (revoking 100,000 certificates one officer decision at a time is not
what this measures; the sample gives the per-revocation rate).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import multiprocessing as mp
import os
import pwd
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asn1crypto import core, ocsp  # noqa: E402
from sqlalchemy import text  # noqa: E402

from ca.authority import CertificateAuthority, IssueRequest, initialise  # noqa: E402
from ca.config import default_config_text  # noqa: E402
from ca.ocsp import OcspResponder  # noqa: E402
from sscard.audit import AuditLog  # noqa: E402
from sscard.card.validation import synthetic_ssn  # noqa: E402
from sscard.crypto.asymmetric import PublicKey  # noqa: E402
from sscard.keys.software import SoftwareKey  # noqa: E402

FUJIAN_CARDS = 16_130_000
PASSPHRASE = b"scale bench passphrase"
PG_BIN = Path(os.environ.get("SSCARD_PG_BIN", "/usr/lib/postgresql/15/bin"))
KEY_POOL = 1000
CHUNK = 500          # certificates per transaction (issue_batch chunk_size)
CALL = 5000          # requests per issue_batch call (results are dropped between calls)



def line(what: str, ours: float, reference: float | None = None, unit: str = "/s") -> None:
    if reference:
        print(f"{what}: ours={ours:.0f}{unit} reference={reference:.0f}{unit} "
              f"ratio={ours / reference:.2f}", flush=True)
    else:
        print(f"{what}: {ours:.1f}{unit}", flush=True)


class PrivateCluster:
    """A throw-away PostgreSQL 15 with durable defaults, on a free port."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="sscard-scale-pg-"))
        self.data = self.base / "data"
        self.root = os.geteuid() == 0
        self.port = 0

    def _run(self, *args: str) -> None:
        cmd = (["runuser", "-u", "postgres", "--"] if self.root else []) + list(args)
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)

    def start(self) -> str:
        if self.root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"),
                  "-w", "-t", "120", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 "
                  f"-c unix_socket_directories={self.base} -c shared_buffers=512MB "
                  "-c max_wal_size=4GB -c checkpoint_timeout=15min", "start")
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE ca_scale")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/ca_scale"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


def subject(i: int) -> str:
    return f"CN=持卡人{i},serialNumber={synthetic_ssn(i)},C=CN"


def _issue_worker(home: str, url: str, start: int, stop: int, spki_pool: list[bytes],
                  progress: Any, results: Any) -> None:
    """Issue subjects [start, stop); puts (count, seconds, peak RSS KiB, CPU seconds) on
    ``results``."""
    keys = [PublicKey.from_spki(s) for s in spki_pool]
    ca = CertificateAuthority.open(home, PASSPHRASE, database_url=url, audit=AuditLog.at_home(home))
    done = 0
    began = time.perf_counter()
    try:
        for first in range(start, stop, CALL):
            last = min(stop, first + CALL)
            issued = ca.issue_batch(
                (IssueRequest(public_key=keys[i % len(keys)], subject=subject(i))
                 for i in range(first, last)), "cardholder-sign", chunk_size=CHUNK)
            done += len(issued)
            with progress.get_lock():
                progress.value += len(issued)
    finally:
        ca.close()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        results.put((done, time.perf_counter() - began, usage.ru_maxrss,
                     usage.ru_utime + usage.ru_stime))


def _sign_worker(home: str, url: str, seconds: float) -> float:
    ca = CertificateAuthority.open(home, PASSPHRASE, database_url=url, audit=AuditLog.at_home(home))
    try:
        key = ca.issuer().key
        tbs = os.urandom(700)  # about a cardholder TBSCertificate
        n = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            key.sign(tbs)
            n += 1
        return n / (time.perf_counter() - began)
    finally:
        ca.close()


def raw_sign_rate(home: Path, url: str, workers: int, seconds: float) -> float:
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        return sum(pool.starmap(_sign_worker, [(str(home), url, seconds)] * workers))


def issue_all(home: Path, url: str, count: int, workers: int) -> tuple[float, int, float]:
    """(certificates per second over the whole run, peak worker RSS KiB, CPU seconds the
    issuing processes used)."""
    spki_pool = [SoftwareKey.generate("sm2").public_key().spki_der() for _ in range(KEY_POOL)]
    ctx = mp.get_context("fork")
    progress = ctx.Value("q", 0)
    results = ctx.Queue()
    bounds = [count * w // workers for w in range(workers + 1)]
    began = time.perf_counter()
    procs = [ctx.Process(target=_issue_worker, args=(str(home), url, bounds[w], bounds[w + 1],
                                                     spki_pool, progress, results))
             for w in range(workers)]
    for proc in procs:
        proc.start()
    step = max(1, count // 10)
    shown = 0
    while any(proc.is_alive() for proc in procs):
        time.sleep(1.0)
        if progress.value >= shown + step:
            shown = progress.value
            elapsed = time.perf_counter() - began
            print(f"  issued {shown:,} of {count:,} in {elapsed:.0f}s "
                  f"({shown / max(elapsed, 1e-9):.0f}/s)", flush=True)
    seconds = time.perf_counter() - began
    for proc in procs:
        proc.join()
    if any(proc.exitcode != 0 for proc in procs):
        raise SystemExit("an issuing worker failed (see its traceback above)")
    outcome = [results.get(timeout=10) for _ in procs]
    issued = sum(r[0] for r in outcome)
    if issued != count:
        raise SystemExit(f"issued {issued} of {count}")
    return issued / seconds, max(r[2] for r in outcome), sum(r[3] for r in outcome)


def revoke(ca: CertificateAuthority, share: float, sample: int) -> tuple[float, int]:
    """Revoke ``share`` of the certificates: a timed sample through ca.revoke, the rest by one
    UPDATE. Returns (revocations per second of the sample, total revoked)."""
    with ca.engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM certificates WHERE issuer_id = :i AND "
                                  "profile = 'cardholder-sign'"),
                             {"i": ca.database_id}).scalar_one()
        target = int(total * share)
        picked = [row[0] for row in conn.execute(text(
            "SELECT serial FROM certificates WHERE issuer_id = :i AND profile = "
            "'cardholder-sign' ORDER BY random() LIMIT :n"), {"i": ca.database_id, "n": target})]
    timed = picked[:min(sample, len(picked))]
    began = time.perf_counter()
    for serial in timed:
        ca.revoke(int(serial, 16), "keyCompromise")
    rate = len(timed) / max(time.perf_counter() - began, 1e-9)
    rest = picked[len(timed):]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with ca.engine.begin() as conn:
        for first in range(0, len(rest), 50_000):
            conn.execute(text(
                "UPDATE certificates SET status = 'revoked', revoked_at = :t, "
                "revocation_reason = 1 WHERE issuer_id = :i AND serial = ANY(:s)"),
                {"t": now, "i": ca.database_id, "s": rest[first:first + 50_000]})
    return rate, len(picked)


def ocsp_rate(ca: CertificateAuthority, seconds: float) -> tuple[float, float, dict[str, int]]:
    """(OCSP answers per second with a fresh nonce, raw signatures per second of the responder
    key, status counts) for random serials: issued good, revoked and never issued."""
    signer = ca.ocsp_signer()
    issuer = ca.certificate
    responder = OcspResponder(signer.key, signer.certificate, issuer, ca.status)
    with ca.engine.connect() as conn:
        serials = [int(s, 16) for (s,) in conn.execute(text(
            "SELECT serial FROM certificates WHERE issuer_id = :i ORDER BY random() LIMIT 2000"),
            {"i": ca.database_id})]
    serials += [random.getrandbits(158) | (1 << 158) for _ in range(200)]
    random.shuffle(serials)
    name_hash = hashlib.sha1(issuer.subject.dump()).digest()
    key_hash = hashlib.sha1(issuer.public_key["public_key"].contents[1:]).digest()

    def request(serial: int) -> bytes:
        return ocsp.OCSPRequest({"tbs_request": {
            "request_list": [{"req_cert": {
                "hash_algorithm": {"algorithm": "sha1"}, "issuer_name_hash": name_hash,
                "issuer_key_hash": key_hash, "serial_number": serial}}],
            "request_extensions": [{"extn_id": "nonce",
                                    "extn_value": core.OctetString(os.urandom(16))}]}}).dump()

    requests = [request(s) for s in serials]
    counts: dict[str, int] = {}
    n = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        der = responder.respond(requests[n % len(requests)], dt.datetime.now(dt.UTC))
        resp = ocsp.OCSPResponse.load(der)
        status = resp["response_bytes"]["response"].parsed["tbs_response_data"]["responses"][
            0]["cert_status"].name
        counts[status] = counts.get(status, 0) + 1
        n += 1
    ours = n / (time.perf_counter() - began)
    tbs = os.urandom(200)
    m = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds / 2:
        signer.key.sign(tbs)
        m += 1
    return ours, m / (time.perf_counter() - began), counts


def profile_issuance(home: Path, url: str, count: int) -> None:
    """Where one process's issuance time goes, by category of the code that spends it."""
    import cProfile
    import pstats

    keys = [SoftwareKey.generate("sm2").public_key() for _ in range(50)]
    requests = [IssueRequest(public_key=keys[i % 50], subject=subject(10_000_000 + i))
                for i in range(count)]
    with CertificateAuthority.open(home, PASSPHRASE, database_url=url,
                                   audit=AuditLog.at_home(home)) as ca:
        ca.issue_batch(requests[:10], "cardholder-sign")  # warm up: key loaded, connection
        profiler = cProfile.Profile()
        began = time.perf_counter()
        profiler.enable()
        ca.issue_batch(requests[10:], "cardholder-sign", chunk_size=CHUNK)
        profiler.disable()
        elapsed = time.perf_counter() - began
    shares: dict[str, float] = {}
    stats: Any = pstats.Stats(profiler)
    # .stats: (file, line, name) -> (primitive calls, calls, own time, cumulative, callers)
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        if filename.endswith("sm2.py") and name in ("sign", "sign_digest", "_sign"):
            what = "SM2 signature (OpenSSL)"
        elif "psycopg" in filename or "sqlalchemy" in filename:
            what = "database (SQLAlchemy, psycopg, PostgreSQL round trips)"
        elif "/ca/" in filename or "asn1crypto" in filename or "/sscard/" in filename:
            what = "CA checks and DER encoding"
        else:
            what = "other Python"
        shares[what] = shares.get(what, 0.0) + tottime
    total = sum(shares.values())
    print(f"profile of one process issuing {count - 10:,} ({(count - 10) / elapsed:.0f}/s "
          "under the profiler):", flush=True)
    for what, spent in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {what}: {100 * spent / total:.0f}%", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--db", help="SQLAlchemy URL of an empty PostgreSQL database")
    parser.add_argument("--revoked-share", type=float, default=0.10)
    parser.add_argument("--ocsp-seconds", type=float, default=5.0)
    parser.add_argument("--profile", type=int, default=3000, metavar="N",
                        help="also profile one process issuing N certificates (0: skip)")
    args = parser.parse_args()

    cluster = None
    url = args.db
    wall = time.perf_counter()
    if url is None:
        cluster = PrivateCluster()
        url = cluster.start()
    tmp = Path(tempfile.mkdtemp(prefix="sscard-scale-"))
    try:
        home = tmp / "home"
        config = tmp / "ca.toml"
        config.write_text(default_config_text(database_url=url), encoding="utf-8")
        initialise(home, config, PASSPHRASE, database_url=url, audit=AuditLog.at_home(home))
        print(f"scale run: {args.count:,} SM2 cardholder certificates, {args.workers} "
              f"process(es), PostgreSQL at {url.split('@')[-1]}", flush=True)

        reference = raw_sign_rate(home, url, args.workers, 3.0)
        rate, worker_rss, cpu = issue_all(home, url, args.count, args.workers)
        line(f"issuance of {args.count:,} SM2 certificates into PostgreSQL "
             f"({args.workers} processes, {CHUNK}/transaction)", rate, reference)
        line("issuance wall time", args.count / rate, unit=" s")
        # on a shared machine the wall-clock rate measures the neighbours too; CPU time does not
        print(f"issuance CPU in the CA processes: {1000 * cpu / args.count:.2f} ms per "
              f"certificate (PostgreSQL server not counted), i.e. "
              f"{args.count / cpu:.0f}/s per fully available core", flush=True)

        with CertificateAuthority.open(home, PASSPHRASE, database_url=url,
                                       audit=AuditLog.at_home(home)) as ca:
            revoke_rate, revoked = revoke(ca, args.revoked_share, 500)
            line("revocation through ca.revoke (timed sample of 500)", revoke_rate)
            began = time.perf_counter()
            crl = ca.build_crl_der()
            crl_seconds = time.perf_counter() - began
            print(f"full CRL with {revoked:,} revoked entries ({len(crl) / 1e6:.1f} MB) built, "
                  f"signed and recorded: {crl_seconds:.2f} s", flush=True)
            ours, raw, counts = ocsp_rate(ca, args.ocsp_seconds)
            line("OCSP answers against the database (nonce, signed each; statuses "
                 + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")", ours, raw)
            with ca.engine.connect() as conn:
                db_bytes = conn.execute(text(
                    "SELECT pg_database_size(current_database())")).scalar_one()
                table_bytes = conn.execute(text(
                    "SELECT pg_total_relation_size('certificates') + "
                    "pg_total_relation_size('requests')")).scalar_one()
        own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"memory: peak RSS issuing worker={worker_rss / 1024:.0f} MB, "
              f"main process={own_rss / 1024:.0f} MB", flush=True)
        per_cert = table_bytes / args.count
        print(f"database size: {db_bytes / 1e6:.0f} MB total, certificates+requests "
              f"{table_bytes / 1e6:.0f} MB ({per_cert:.0f} bytes per certificate)", flush=True)
        scale = FUJIAN_CARDS / args.count
        print(f"projection for {FUJIAN_CARDS:,} cards: issuance {FUJIAN_CARDS / rate / 3600:.1f} h "
              f"at {rate:.0f}/s, database {per_cert * FUJIAN_CARDS / 1e9:.1f} GB, full CRL "
              f"({int(revoked * scale):,} entries) about {crl_seconds * scale:.0f} s and "
              f"{len(crl) * scale / 1e6:.0f} MB", flush=True)
        goal = "met" if args.count / rate < 600 or args.count < 1_000_000 else "NOT met"
        if args.count >= 1_000_000:
            print(f"goal 1,000,000 in under 10 minutes: {goal} "
                  f"({1_000_000 / rate / 60:.1f} min)", flush=True)
        if args.profile:
            profile_issuance(home, url, args.profile)
        print(f"total wall time {time.perf_counter() - wall:.0f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
