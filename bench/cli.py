"""Start-up time of the ``sscard`` command beside Python's own start-up, measured in the same
run (issue 16 item 5).

    python bench/cli.py [--runs N] [--only TEXT]

Each figure is the median wall time of N runs (default 10) of a fresh process, taken in
alternating rounds with ``python -c pass`` (the reference) so that load on the machine falls on
both alike. The command is started the way the installed ``sscard`` script starts it (import
``sscard.cli`` and call ``main``), with this checkout first on the path. Besides the help
screens it times one real command: ``sscard verify`` of a CMS signature that ``openssl cms
-sign`` made (parse, path building, report; exit 1 as the self-signed signer is not a trust
anchor of the default mode, which does not matter here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SSCARD = [sys.executable, "-c", "import sys; from sscard.cli import main; sys.argv[0] = "
          "'sscard'; main()"]
REFERENCE = [sys.executable, "-c", "pass"]
def help_cases() -> dict[str, list[str]]:
    """``--help`` of the root, of every group and command in sscard.cli.COMMANDS, and of the
    common subcommands."""
    sys.path.insert(0, str(ROOT))
    from sscard.cli import COMMANDS

    cases = {"sscard --help": ["--help"]}
    cases.update({f"sscard {name} --help": [name, "--help"] for name in sorted(COMMANDS)})
    cases["sscard x509 verify --help"] = ["x509", "verify", "--help"]
    cases["sscard card info --help"] = ["card", "info", "--help"]
    return cases


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    if proc.returncode not in (0, 1):  # 1: "not valid", a finished verification
        raise SystemExit(f"{argv}: exit {proc.returncode}")
    return time.perf_counter() - start


def signed_sample(work: Path) -> list[str]:
    """``verify`` arguments for a CMS SignedData made by OpenSSL in ``work``."""
    key, cert, data, signed = (work / n for n in ("k.pem", "c.pem", "data", "s.p7s"))
    data.write_bytes(b"benchmark content\n")
    openssl = ["openssl"]
    subprocess.run([*openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=Bench Signer",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    subprocess.run([*openssl, "cms", "-sign", "-in", str(data), "-signer", str(cert), "-inkey",
                    str(key), "-outform", "DER", "-out", str(signed), "-nodetach"],
                   check=True, capture_output=True)
    return ["verify", str(signed), "--trust", str(cert)]


def sm2_samples(work: Path) -> dict[str, list[str]]:
    """``sign``, ``verify`` and ``x509 verify`` arguments on an SM2 chain made in ``work``."""
    sys.path.insert(0, str(ROOT))
    from tests.validation.chain import make_ca, make_leaf

    root = make_ca("CN=Bench CLI Root,C=CN")
    ca = make_ca("CN=Bench CLI CA,C=CN", root)
    signer = make_leaf("CN=Bench CLI Signer,C=CN", ca)
    paths = {n: work / f"{n}.der" for n in ("root", "ca", "signer")}
    for name, issued in (("root", root), ("ca", ca), ("signer", signer)):
        paths[name].write_bytes(issued.cert.dump())
    passphrase = work / "passphrase"
    passphrase.write_bytes(b"bench passphrase\n")
    passphrase.chmod(0o600)
    key = work / "signer.key"
    signer.key.store(key, b"bench passphrase")
    data, signed = work / "document", work / "signed.p7s"
    data.write_bytes("异地就医备案\n".encode())
    sign = ["sign", "--key", str(key), "--passphrase-file", str(passphrase), "--cert",
            str(paths["signer"]), "--chain", str(paths["ca"]), str(data), str(signed)]
    subprocess.run([*SSCARD, *sign], env=_env(), cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return {
        "sscard sign (SM2, local key)": sign,
        "sscard verify (SM2, local)": ["verify", str(signed), "--trust", str(paths["root"])],
        "sscard x509 verify (SM2 chain)": ["x509", "verify", str(paths["signer"]), "--trust",
                                          str(paths["root"]), "--intermediate",
                                          str(paths["ca"])],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="Runs per figure (median).")
    parser.add_argument("--importtime", action="store_true",
                        help="Also show the largest imports of each real command.")
    parser.add_argument("--only", metavar="TEXT",
                        help="Only the figures whose name contains TEXT (e.g. 'agent').")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        real = {**sm2_samples(Path(work)),
                "sscard verify (P-256, OpenSSL-made)": signed_sample(Path(work))}
        cases = {what: argv for what, argv in {**help_cases(), **real}.items()
                 if args.only is None or args.only in what}
        if not cases:
            raise SystemExit(f"no figure's name contains {args.only!r}")
        real = {what: argv for what, argv in real.items() if what in cases}
        measure(args.runs, cases)
        if args.importtime:
            for what, argv in real.items():
                print(f"{what}: largest imports (cumulative us): {largest_imports(argv)}")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def largest_imports(args: list[str], count: int = 6) -> str:
    proc = subprocess.run([sys.executable, "-X", "importtime", *SSCARD[1:], *args],
                          env=_env(), cwd=ROOT, capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _self, cumulative, name = line[len("import time:"):].split("|")
            if cumulative.strip().isdigit() and not name.startswith("   "):
                rows.append((int(cumulative), name.strip()))
    return ", ".join(f"{name} {us}" for us, name in sorted(rows, reverse=True)[:count])


def measure(runs: int, cases: dict[str, list[str]]) -> list[str]:
    """Median wall time of each case over ``runs`` runs, beside ``python -c pass`` timed in the
    same loop; prints and returns one line per case."""
    env = _env()
    reference: list[float] = []
    ours: dict[str, list[float]] = {what: [] for what in cases}
    wall(REFERENCE, env)  # warm the file cache before counting
    for args in cases.values():
        wall([*SSCARD, *args], env)
    for _ in range(runs):
        reference.append(wall(REFERENCE, env))
        for what, args in cases.items():
            ours[what].append(wall([*SSCARD, *args], env))
    ref = statistics.median(reference)
    lines = []
    for what, times in ours.items():
        mine = statistics.median(times)
        lines.append(f"{what}: ours={mine:.3f}s reference={ref:.3f}s ratio={mine / ref:.2f}")
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
