"""A real mosquitto broker for tests, on free loopback ports, with a generated config.

Optional: TLS listeners (one server-auth only, one requiring a client certificate) with
a CA, server and client certificates generated at test time (the `cryptography` package
if installed, else the openssl CLI), a password file via mosquitto_passwd, persistence
(so a persistent subscriber's queue survives a broker restart). Every wait is bounded.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from inspector.demo.local_broker import Broker, free_port, mosquitto_binary

__all__ = ["Broker", "Certs", "free_port", "make_certs", "mosquitto_binary"]


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verification must fail with it


def make_certs(folder: Path) -> Certs:
    """A test PKI: CA, server cert for 127.0.0.1/localhost, client cert, unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return _openssl_certs(folder)
    return _cryptography_certs(folder)


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=30)


def _openssl_certs(d: Path) -> Certs:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other-ca"):
        _run(["openssl", "req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt",
              "-days", "2", "-subj", f"/CN=inspector test {name}",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    leaf = {"server": ("subjectAltName=IP:127.0.0.1,DNS:localhost", "serverAuth"),
            "client": ("subjectAltName=DNS:inspector-client", "clientAuth")}
    for name, (san, eku) in leaf.items():
        _run(["openssl", "req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
              "-subj", f"/CN=inspector test {name}"], d)
        (d / f"{name}.ext").write_text(
            f"basicConstraints=CA:FALSE\n{san}\nextendedKeyUsage={eku}\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n")
        _run(["openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey",
              "ca.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
              "-extfile", f"{name}.ext"], d)
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt",
                 d / "client.key", d / "other-ca.crt")


def _cryptography_certs(d: Path) -> Certs:  # pragma: no cover - used when installed
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key_out(key, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    def cert(subject: str, key, issuer=None, issuer_key=None, ca=False, san=None, eku=None):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        b = (x509.CertificateBuilder().subject_name(name)
             .issuer_name(issuer.subject if issuer else name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        return b.sign(issuer_key or key, hashes.SHA256())

    def pem(c, path: Path) -> None:
        path.write_bytes(c.public_bytes(serialization.Encoding.PEM))

    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = cert("inspector test ca", ca_key, ca=True)
    pem(ca, d / "ca.crt")
    pem(cert("inspector test other-ca", other_key, ca=True), d / "other-ca.crt")
    for name, san, eku in (
        ("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost")], ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", [x509.DNSName("inspector-client")], ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        k = ec.generate_private_key(ec.SECP256R1())
        key_out(k, d / f"{name}.key")
        pem(cert(f"inspector test {name}", k, ca, ca_key, san=san, eku=eku), d / f"{name}.crt")
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt",
                 d / "client.key", d / "other-ca.crt")


