#!/usr/bin/env bash
# Installs the Debian packages that the tests and the demo use, when run as root and missing.
# Real components, not mocks: pcscd + vsmartcard's virtual reader, SoftHSM2, PostgreSQL,
# Chromium + ChromeDriver, the OpenSSL CLI, a JRE with BouncyCastle (and javac, for the SM2 CMS
# interop check the tests compile), wrk, and pcsc-tools + OpenSC (pcsc_scan and opensc-tool
# check the emulated card's ATR and T=0 answers), and the peers bench/peers.py measures against
# (nginx, golang-cfssl).
set -euo pipefail
PKGS=(openssl softhsm2 pcscd vsmartcard-vpcd libpcsclite-dev swig postgresql
      chromium chromium-driver fonts-wqy-zenhei default-jre-headless default-jdk-headless
      libbcpkix-java wrk pcsc-tools opensc nginx golang-cfssl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages (run as root to install): ${missing[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
