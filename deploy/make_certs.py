"""`python -m deploy.make_certs --hosts nats,hub.example.net`: TLS certificates for NATS servers
(and PostgreSQL's: `--hosts postgres --out deploy/postgres/tls`, checked by the controllers'
`sslmode=verify-full` against the same `ca.pem`).

A private CA (made on the first run, kept in `--ca-dir`, default deploy/pki/: `ca.pem` and
`ca.key`, which never goes to a server) signs one server certificate per run for the names and
addresses in `--hosts`. `--out` (default deploy/nats/tls/, which compose mounts as
/etc/nats/tls) receives `server.pem`, `server.key` (mode 0600) and a copy of `ca.pem`, as
hub.conf and leaf.conf expect them; give that `ca.pem` to every client (NATS_TLS_CA_FILE) and
to the leaf servers.

    python -m deploy.make_certs --hosts nats,localhost,hub.example.net
    python -m deploy.make_certs --hosts leaf-eu.example.net --out deploy/nats/leaf-eu/tls

A certificate from a CA you already run works as well: put it where hub.conf names it.
"""

import argparse
import ipaddress
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEPLOY = Path(__file__).resolve().parent
CA_DAYS = 10 * 365
SERVER_DAYS = 825  # what browsers and most TLS stacks still accept for a leaf certificate


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deploy.make_certs", description="TLS certificates for NATS servers"
    )
    p.add_argument(
        "--hosts",
        required=True,
        help="comma-separated DNS names and IP addresses clients use to reach the server",
    )
    p.add_argument("--ca-dir", type=Path, default=DEPLOY / "pki", help="the CA's folder")
    p.add_argument("--out", type=Path, default=DEPLOY / "nats" / "tls", help="the server's folder")
    return p


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailprobe"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Readable by its owner only, from the first byte on."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_or_make_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_file, key_file = ca_dir / "ca.pem", ca_dir / "ca.key"
    if cert_file.exists() and key_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file} is not the EC key this command makes")
        return x509.load_pem_x509_certificate(cert_file.read_bytes()), key
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = _name("mailprobe NATS CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_file, _pem_key(key))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def server_cert(
    hosts: list[str], ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # A leaf server's connection to the hub is a TLS client too, with the same certificate.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    if not hosts:
        print("error: --hosts needs at least one name or address", file=sys.stderr)
        return 2
    try:
        ca, ca_key = load_or_make_ca(args.ca_dir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cert, key = server_cert(hosts, ca, ca_key)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(out / "server.key", _pem_key(key))
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    print(
        f"{out}/server.pem for {', '.join(hosts)} (until {cert.not_valid_after_utc:%Y-%m-%d}), "
        f"server.key and ca.pem; the CA stays in {args.ca_dir}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
