"""TLS test files: a P-256 CA (Python's ssl does not do SM2 TLS), a server certificate for
127.0.0.1 whose key is encrypted (passphrase in a file), and a client certificate."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    server_passphrase: Path
    passphrase: str
    client_cert: Path
    client_key: Path

    @property
    def client_pair(self) -> tuple[str, str]:
        return str(self.client_cert), str(self.client_key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          eku: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    if eku == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)  # secret files are refused unless only the owner may read them
    path.chmod(0o600)
    return path


def make_tls_files(directory: Path) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Serving Test TLS CA", ca_key, "Serving Test TLS CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("127.0.0.1", server_key, "Serving Test TLS CA", ca_key,
                   eku=ExtendedKeyUsageOID.SERVER_AUTH)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("business system", client_key, "Serving Test TLS CA", ca_key,
                   eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    passphrase = "tls key passphrase 7"
    return TlsFiles(
        ca=_write(directory / "ca.pem", ca.public_bytes(pem)),
        server_cert=_write(directory / "server.pem", server.public_bytes(pem)),
        server_key=_write(directory / "server.key", server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase.encode()))),
        server_passphrase=_write(directory / "server.pass", (passphrase + "\n").encode()),
        passphrase=passphrase,
        client_cert=_write(directory / "client.pem", client.public_bytes(pem)),
        client_key=_write(directory / "client.key", client_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
    )


def make_foreign_client(directory: Path) -> tuple[Path, tuple[str, str]]:
    """Another CA (standing for a public CA in the system's store) and a client certificate
    under it: (that CA's PEM, (client certificate, key))."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Some Public CA", ca_key, "Some Public CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("employment", key, "Some Public CA", ca_key,
                   eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    cert_path = _write(directory / "foreign-client.pem", client.public_bytes(pem))
    key_path = _write(directory / "foreign-client.key", key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return _write(directory / "public-ca.pem", ca.public_bytes(pem)), (str(cert_path),
                                                                       str(key_path))


def encrypted_client_key(tls: TlsFiles, directory: Path,
                         passphrase: str = "client tls key passphrase 5") -> tuple[Path, Path]:
    """The client certificate's key encrypted at rest, as a service keeps its own TLS client
    key, and the passphrase file (mode 0600) that opens it."""
    key = serialization.load_pem_private_key(tls.client_key.read_bytes(), None)
    directory.mkdir(parents=True, exist_ok=True)
    return (_write(directory / "client-encrypted.key", key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(passphrase.encode()))),
            _write(directory / "client-key.pass", (passphrase + "\n").encode()))
