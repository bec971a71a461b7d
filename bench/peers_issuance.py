"""Issuance over the CA's HTTP API against its peers, measured from other processes.

``sscard ca serve --server granian`` (the faster of the two servers it ships: see below; SQLite by
default; PostgreSQL with ``--postgres URL``) issues from
a CSR for a principal that signs every request (``sscard.httpsig``: a fresh nonce and signature
each, checked against the replay memory, authorised by ``ca.authorization`` and recorded in the
audit log). The references, measured in the same run with alternating rounds:

- P-256: ``cfssl serve`` (Debian ``golang-cfssl``) signing the same CSR through
  ``/api/v1/cfssl/sign`` with its SQLite certdb (one row per certificate, as ours);
- SM2: the raw SM2 sign rate of as many processes as the server has workers (cfssl has no SM2).

By default the audit log's tables live in the CA's database (``ca serve --audit-db`` set to
the CA's URL), so that a certificate and its audit records share one transaction;
``--audit-apart`` measures the audit log in its own database instead.

The load comes from client processes holding keep-alive connections; the signed requests are
made before each round, so the clients only send. Prints, per algorithm::

    issuance <alg> over HTTP: ours=<n>/s reference=<n>/s ratio=<r>
      ours p50=<ms> p99=<ms> cpu=<us>/cert   reference p50=... p99=... cpu=...

The single-request rows issue one certificate per request, like cfssl's (like for like); each is
followed by the same row under the other server ``ca serve`` offers (gunicorn, its default; this
script's ``--server`` swaps them), driven in the same alternating rounds: granian issued 0.85-1.20
times gunicorn's rate, above 1 in 7 runs of 8, with less CPU per certificate in 7 of 8
(docs/performance.md), so it is the main row. Extra
rows (unless ``--no-batch``) send the RA's batches instead: ``POST /api/v1/certificates/batch``
with 50 CSRs per signed request, each CSR's proof of possession verified by the RA and attested
(``attested_key_sha256``); their rate and CPU are per certificate, their latency per batch.

``rows(seconds)`` returns the same as ``Row`` values (``bench/peers.py`` prints them in its
table). ``--profile DIR`` records a py-spy flame graph of one worker during the last round of
each row (``issuance-<alg>[-batch].svg``: samples holding the GIL, i.e. Python's CPU).

Run: ``.venv/bin/python bench/peers_issuance.py [--seconds 5] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import exit_on_sigterm, stop_group

SSCARD = str(Path(sys.executable).with_name("sscard"))
PATH = "/api/v1/certificates"
BATCH_PATH = "/api/v1/certificates/batch"
#: CSRs per batch request in the batch rows (the RA's card batches; the API takes up to 100)
BATCH = 50
CFSSL_PATH = "/api/v1/cfssl/sign"
WORKERS = 2
THREADS = 4
CLIENTS = 4  # client processes
CONNECTIONS = 4  # keep-alive connections (threads) per client process
CLK_TCK = os.sysconf("SC_CLK_TCK")

# cfssl's certdb schema (certdb/sqlite/migrations of the cfssl release Debian ships)
CFSSL_SCHEMA = """
CREATE TABLE certificates (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL,
  ca_label blob, status blob NOT NULL, reason int, expiry timestamp, revoked_at timestamp,
  pem blob NOT NULL, PRIMARY KEY(serial_number, authority_key_identifier));
CREATE TABLE ocsp_responses (serial_number blob NOT NULL,
  authority_key_identifier blob NOT NULL, body blob NOT NULL, expiry timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier));
"""


@dataclass(frozen=True)
class Row:
    """One figure: our rate against the reference's, with our latency and server CPU."""

    what: str
    ours: float
    reference: float
    ratio: float
    p50_ms: float
    p99_ms: float
    cpu_us: float


@dataclass(frozen=True)
class Round:
    """What one round of load measured."""

    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    errors: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of the processes (and their reaped children), from /proc."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / CLK_TCK
    return total


def _group_pids(leader: int) -> list[int]:
    """The processes of a server's process group (gunicorn's master and workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == leader:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _wait_ready(url_host: str, port: int, path: str, proc: subprocess.Popen[bytes],
                log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server ended: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection(url_host, port, timeout=5)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def _server(args: Sequence[str], log: Path, port: int, ready_path: str,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, **(env or {})})
    try:
        _wait_ready("127.0.0.1", port, ready_path, proc, log)
        yield proc
    finally:
        stop_group(proc)


# -- the load: pre-made requests sent over keep-alive connections ---------------------------

Request = tuple[bytes, dict[str, str]]


def _client(port: int, path: str, requests: list[Request], seconds: float,
            out: multiprocessing.Queue) -> None:
    """One client process: CONNECTIONS threads, each with its own keep-alive connection."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    position = [0]
    deadline = time.monotonic() + seconds

    def take() -> Request | None:
        with lock:
            if position[0] >= len(requests):
                return None
            position[0] += 1
            return requests[position[0] - 1]

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[float] = []
        bad = 0
        while time.monotonic() < deadline:
            item = take()
            if item is None:
                break
            body, headers = item
            start = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                answer = response.read()
                # a batch answers 200 with a refused item as {"error": ...}: not issued
                ok = response.status in (200, 201) and b'"error"' not in answer
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                ok = False
            if ok:
                mine.append(time.perf_counter() - start)
            else:
                bad += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=run) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((latencies, errors[0], len(requests) - position[0]))


def _drive(port: int, path: str, requests: list[Request], seconds: float,
           server_pids: Sequence[int], warm_up: bool = False, per_request: int = 1) -> Round:
    """Send ``requests`` for ``seconds``; ``per_request``: certificates each request issues
    (a batch's), so that the rate and the CPU are per certificate."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    share = len(requests) // CLIENTS
    procs = [ctx.Process(target=_client, args=(port, path, requests[i * share:(i + 1) * share],
                                                seconds, out)) for i in range(CLIENTS)]
    cpu_before = _cpu_seconds(server_pids)
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds(server_pids) - cpu_before
    for p in procs:
        p.join()
    latencies = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    if not warm_up and any(r[2] == 0 for r in results):
        print("  (a client ran out of prepared requests: the rate is a lower bound)")
    done = len(latencies)
    if not done:
        raise SystemExit(f"no request succeeded ({errors} failed)")
    certs = done * per_request
    return Round(certs / elapsed, latencies[done // 2] * 1000,
                 latencies[min(done - 1, int(done * 0.99))] * 1000, cpu / certs * 1e6, errors)


# -- our CA -------------------------------------------------------------------------------


def _config(algorithm: str, database_url: str | None) -> str:
    database = f'\n[database]\nurl = "{database_url}"\n' if database_url else ""
    return f"""\
base_url = "http://127.0.0.1:8080"

[root]
name = "root"
subject = "CN=Bench Root {algorithm},O=人社厅,C=CN"
algorithm = "{algorithm}"
validity_days = 3650

[[issuing]]
name = "issuing"
subject = "CN=Bench Issuing {algorithm},O=人社厅,C=CN"
algorithm = "{algorithm}"
validity_days = 1825
path_length = 0
{database}"""


def _sscard(home: Path, *args: str) -> None:
    result = subprocess.run([SSCARD, "--home", str(home), *args], capture_output=True,
                            text=True, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"sscard {' '.join(args)}: {result.stderr}")


@dataclass
class OurCA:
    home: Path
    algorithm: str
    database_url: str
    signer: object  # httpsig.RequestSigner
    csr_pem: str


def _setup_ours(work: Path, algorithm: str, database_url: str | None) -> OurCA:
    from ca.authority import CertificateAuthority
    from sscard import httpsig
    from sscard.audit import AuditLog
    from sscard.keys.software import SoftwareKey
    from sscard.x509.builder import CsrBuilder
    from sscard.x509.names import parse_name
    from sscard.x509.pem import der_to_pem

    home = work / f"ca-{algorithm}"
    config = work / f"ca-{algorithm}.toml"
    config.write_text(_config(algorithm, database_url), encoding="utf-8")
    _sscard(home, "ca", "init", "--config", str(config))
    ra_key = SoftwareKey.generate("ec-p256")
    ra_csr = CsrBuilder().subject(parse_name("CN=ra-service,C=CN")).sign(ra_key)
    with CertificateAuthority.open(home, audit=AuditLog.at_home(home)) as authority:
        ra = authority.issue_from_csr(ra_csr.dump(), "service").certificate
    (work / "ra.pem").write_bytes(der_to_pem(ra.dump(), "CERTIFICATE"))
    _sscard(home, "ca", "principal", "add", "ra", "--ra", "--certificate", str(work / "ra.pem"))
    subject_key = SoftwareKey.generate(algorithm)
    csr = CsrBuilder().subject(parse_name("CN=Business System 1,O=社会保障,C=CN")).sign(
        subject_key)
    return OurCA(home, algorithm, database_url or f"sqlite:///{home / 'ca.db'}",
                 httpsig.RequestSigner(ra_key, ra),
                 der_to_pem(csr.dump(), "CERTIFICATE REQUEST").decode("ascii"))


def _our_requests(ca: OurCA, count: int) -> list[Request]:
    body = json.dumps({"profile": "business-system", "csr": ca.csr_pem}).encode()
    out = []
    for _ in range(count):
        headers = ca.signer.headers("POST", PATH, "", body)  # type: ignore[attr-defined]
        out.append((body, {**headers, "Content-Type": "application/json"}))
    return out


def _our_batches(ca: OurCA, count: int, size: int) -> list[Request]:
    """Batch requests of ``size`` CSRs each, as the RA sends a card batch's: proof of
    possession verified by the RA and attested (``attested_key_sha256``), per entry."""
    from ca.client import attested_key
    from sscard.x509.pem import pem_to_der

    attested = attested_key(pem_to_der(ca.csr_pem.encode("ascii"), "CERTIFICATE REQUEST"))
    entry = {"csr": ca.csr_pem, "attested_key_sha256": attested}
    body = json.dumps({"profile": "business-system", "requests": [entry] * size}).encode()
    out = []
    for _ in range(count):
        headers = ca.signer.headers("POST", BATCH_PATH, "", body)  # type: ignore[attr-defined]
        out.append((body, {**headers, "Content-Type": "application/json"}))
    return out


@contextlib.contextmanager
def _serve_ours(ca: OurCA, work: Path, audit_apart: bool,
                server: str) -> Iterator[tuple[int, list[int]]]:
    port = _free_port()
    args = [SSCARD, "--home", str(ca.home), "ca", "serve", "--port", str(port),
            "--workers", str(WORKERS), "--threads", str(THREADS), "--server", server]
    if not audit_apart:  # the audit log's tables in the CA's database: one transaction each
        args += ["--audit-db", ca.database_url]
    with _server(args, work / f"serve-{ca.algorithm}-{server}.log", port, "/ready") as proc:
        time.sleep(1.0)  # both workers booted
        yield port, _group_pids(proc.pid)


# -- cfssl --------------------------------------------------------------------------------


def _setup_cfssl(work: Path) -> tuple[Path, str]:
    cfssl = shutil.which("cfssl")
    if cfssl is None:
        raise SystemExit("cfssl not found: install Debian golang-cfssl (scripts/system-deps.sh)")
    d = work / "cfssl"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "ca-key.pem"),
                    "-out", str(d / "ca.pem"), "-subj", "/CN=cfssl bench CA", "-days", "365"],
                   check=True, capture_output=True)
    db = sqlite3.connect(d / "certs.db")
    db.executescript(CFSSL_SCHEMA)
    db.close()
    (d / "db.json").write_text(json.dumps({"driver": "sqlite3",
                                           "data_source": str(d / "certs.db")}))
    return d, cfssl


@contextlib.contextmanager
def _serve_cfssl(d: Path, cfssl: str) -> Iterator[tuple[int, list[int]]]:
    port = _free_port()
    args = [cfssl, "serve", "-address", "127.0.0.1", "-port", str(port), "-ca",
            str(d / "ca.pem"), "-ca-key", str(d / "ca-key.pem"), "-db-config",
            str(d / "db.json"), "-loglevel", "2"]
    with _server(args, d / "serve.log", port, "/api/v1/cfssl/health") as proc:
        yield port, [proc.pid]


def _cfssl_requests(csr_pem: str, count: int) -> list[Request]:
    body = json.dumps({"certificate_request": csr_pem}).encode()
    return [(body, {"Content-Type": "application/json"})] * count


# -- raw signing --------------------------------------------------------------------------


def _sign_loop(algorithm: str, seconds: float, out: multiprocessing.Queue) -> None:
    from sscard.keys.software import SoftwareKey

    key = SoftwareKey.generate(algorithm)
    message = b"x" * 300
    key.sign(message)
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(50):
            key.sign(message)
        count += 50
    out.put(count)


def raw_sign_rate(algorithm: str, processes: int, seconds: float) -> float:
    """Signatures per second of ``processes`` processes signing at once."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_sign_loop, args=(algorithm, seconds, out))
             for _ in range(processes)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    return total / elapsed


# -- rounds -------------------------------------------------------------------------------


def _best(rounds: list[Round]) -> Round:
    return max(rounds, key=lambda r: r.rate)


def _line(what: str, ours: Round, reference: float, ref_round: Round | None) -> Row:
    row = Row(what, ours.rate, reference, ours.rate / reference if reference else 0.0,
              ours.p50_ms, ours.p99_ms, ours.cpu_us)
    print(f"{what}: ours={row.ours:.0f}/s reference={row.reference:.0f}/s "
          f"ratio={row.ratio:.2f}")
    print(f"  ours p50={ours.p50_ms:.1f} ms p99={ours.p99_ms:.1f} ms "
          f"cpu={ours.cpu_us:.0f} us/cert errors={ours.errors}", end="")
    if ref_round is not None:
        print(f"   reference p50={ref_round.p50_ms:.1f} ms p99={ref_round.p99_ms:.1f} ms "
              f"cpu={ref_round.cpu_us:.0f} us/cert errors={ref_round.errors}")
    else:
        print()
    return row


def _expected(rate_guess: float, seconds: float) -> int:
    return int(rate_guess * seconds * 1.5) + 200


def measure(seconds: float = 5.0, rounds: int = 2, algorithms: Sequence[str] = ("ec-p256",
            "sm2"), postgres: str | Callable[[str], str] | None = None,
            profile: Path | None = None, audit_apart: bool = False,
            profile_format: str = "svg", batch: bool = True,
            server: str = "granian") -> list[Row]:
    other_server = "gunicorn" if server == "granian" else "granian"
    out: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-issuance-") as tmp:
        work = Path(tmp)
        cfssl_dir, cfssl = _setup_cfssl(work) if "ec-p256" in algorithms else (None, "")
        for algorithm in algorithms:
            ca = _setup_ours(work, algorithm,
                             postgres(algorithm) if callable(postgres) else postgres)
            ours: list[Round] = []
            others: list[Round] = []  # the same under the other server
            theirs: list[Round] = []
            guess = 3000.0
            with contextlib.ExitStack() as stack:
                port, pids = stack.enter_context(_serve_ours(ca, work, audit_apart, server))
                oport, opids = stack.enter_context(_serve_ours(ca, work, audit_apart,
                                                               other_server))
                cport, cpids = (stack.enter_context(_serve_cfssl(cfssl_dir, cfssl))
                                if algorithm == "ec-p256" and cfssl_dir is not None
                                else (0, []))
                _drive(port, PATH, _our_requests(ca, 64), 2.0, pids, warm_up=True)
                _drive(oport, PATH, _our_requests(ca, 64), 2.0, opids, warm_up=True)
                for i in range(rounds):
                    requests = _our_requests(ca, _expected(guess, seconds))
                    spy = (_py_spy(profile / f"issuance-{algorithm}.{profile_format}", pids,
                                   seconds)
                           if profile is not None and i == rounds - 1
                           else contextlib.nullcontext())
                    with spy:
                        ours.append(_drive(port, PATH, requests, seconds, pids))
                    others.append(_drive(oport, PATH, _our_requests(
                        ca, _expected(guess, seconds)), seconds, opids))
                    if cport:
                        reqs = _cfssl_requests(ca.csr_pem, _expected(guess, seconds))
                        theirs.append(_drive(cport, CFSSL_PATH, reqs, seconds, cpids))
                batched: list[Round] = []
                for i in range(rounds if batch else 0):
                    requests = _our_batches(ca, _expected(guess, seconds) // BATCH + 8, BATCH)
                    spy = (_py_spy(profile / f"issuance-{algorithm}-batch.{profile_format}",
                                   pids, seconds)
                           if profile is not None and i == rounds - 1
                           else contextlib.nullcontext())
                    with spy:
                        batched.append(_drive(port, BATCH_PATH, requests, seconds, pids,
                                              per_request=BATCH))
            name = "P-256" if algorithm == "ec-p256" else algorithm.upper()
            what = f"issuance {name} over HTTP"
            under_other = f"{what} under {other_server} (ca serve --server {other_server})"
            in_batches = f"{what}, batches of {BATCH} attested by the RA"
            if theirs:
                best = _best(theirs)
                out.append(_line(what, _best(ours), best.rate, best))
                out.append(_line(under_other, _best(others), best.rate, best))
                if batched:
                    out.append(_line(in_batches + " (reference: single cfssl sign)",
                                     _best(batched), best.rate, best))
            else:
                reference = raw_sign_rate(algorithm, WORKERS, min(seconds, 3.0))
                raw = f" (reference: raw sign, {WORKERS} processes)"
                out.append(_line(what + raw, _best(ours), reference, None))
                out.append(_line(under_other + raw, _best(others), reference, None))
                if batched:
                    out.append(_line(in_batches + raw, _best(batched), reference, None))
    return out


@contextlib.contextmanager
def _py_spy(target: Path, pids: Sequence[int], seconds: float) -> Iterator[None]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    workers = sorted(pids)[1:] or list(pids)  # the master starts first: lowest pid
    target.parent.mkdir(parents=True, exist_ok=True)
    # --gil: only samples that hold the GIL, i.e. the CPU spent in Python, not the waits
    fmt = ["--format", "raw"] if target.suffix == ".txt" else []
    proc = subprocess.Popen([spy, "record", "--pid", str(workers[0]), "--duration",
                             str(max(1, int(seconds))), "--output", str(target), "--nonblocking",
                             "--gil", "--rate", "400", *fmt],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.wait(timeout=120)
        print(f"  flame graph of worker {workers[0]}: {target}")


def rows(seconds: float) -> list[Row]:
    """The rows ``bench/peers.py`` prints: P-256 against cfssl serve, SM2 against raw signing."""
    return measure(seconds, rounds=2)


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per figure")
    parser.add_argument("--algorithm", action="append", choices=["ec-p256", "sm2"],
                        help="only this algorithm (repeatable; default: both)")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="the CA's database on this (empty) PostgreSQL URL, with one "
                             "--algorithm; or 'auto': a throw-away cluster (tests/pg.py; Debian "
                             "postgresql), a database per algorithm (default: SQLite)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="write a py-spy flame graph of one worker per algorithm here")
    parser.add_argument("--profile-format", choices=["svg", "txt"], default="svg",
                        help="flame graph (svg) or collapsed stacks (txt)")
    parser.add_argument("--no-batch", action="store_true",
                        help="only the single-request rows (no batch rows)")
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian",
                        help="the server of the main rows (the other gets a row of its own)")
    parser.add_argument("--audit-apart", action="store_true",
                        help="the audit log in its own database (<home>/audit.sqlite, the "
                             "default of ca serve) instead of the CA's")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        postgres: str | Callable[[str], str] | None = args.postgres
        if postgres == "auto":
            from tests.pg import PostgresCluster

            cluster = PostgresCluster()
            cluster.start()
            stack.callback(cluster.stop)
            postgres = cluster.create_database  # one database per algorithm
        measure(args.seconds, args.rounds, args.algorithm or ("ec-p256", "sm2"), postgres,
                args.profile, args.audit_apart, args.profile_format, not args.no_batch,
                args.server)


if __name__ == "__main__":
    main()
