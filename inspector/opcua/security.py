"""Certificates of the OPC UA server (`opcua.security`): its own, the clients it trusts,
and the certificates that stand for users.

The server's certificate and key are made on first start when both are missing
(asyncua's generator: self-signed, RSA 2048, a year, the application URI and host name
in the subject alternative name); when only one of them exists the server does not
start, rather than replace a certificate someone installed. A client certificate is
checked by asyncua's validator (time, URI, key usage, trust) against the trusted folder,
read again on every connection so that moving a file there takes effect at once; a
refused one is written to the rejected folder under its SHA-1 thumbprint (the number
OPC UA tools show) for the integrator to inspect.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.internal_session import ServiceError
from asyncua.ua import status_codes
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from inspector.config.station import StationConfig

log = logging.getLogger("inspector.opcua")


def application_uri(cfg: StationConfig) -> str:
    """The server's ApplicationUri; its certificate must carry the same URI."""
    st = cfg.station
    return f"urn:inspector:{st.site}:{st.line}:{st.station}"


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER certificate, as UaExpert and PLC engineering tools show it."""
    return cert.fingerprint(hashes.SHA1()).hex()  # an identifier here, not a protection


class Certificates:
    """Paths resolved under the state folder; `apply` sets up a not yet started server."""

    def __init__(self, cfg: StationConfig) -> None:
        sec = cfg.opcua.security
        assert sec is not None
        self.cfg, self.sec = cfg, sec

        def path(p: Path) -> Path:
            resolved = cfg.storage.resolve(p)
            assert resolved is not None
            return resolved

        self.certificate, self.private_key = path(sec.certificate), path(sec.private_key)
        self.trusted, self.rejected = path(sec.trusted_clients), path(sec.rejected_clients)
        self._users: dict[str, str] = {}  # SHA-256 of a user certificate -> user name
        for name, file in cfg.opcua.certificate_users.items():
            cert = _load(path(file), f"opcua.certificate_users.{name}")
            self._users[cert.fingerprint(hashes.SHA256()).hex()] = name

    async def apply(self, server: Server) -> None:
        """Certificate, key, security policies and the client check."""
        uri = application_uri(self.cfg)
        self._ensure(uri)
        await server.set_application_uri(uri)
        await server.load_certificate(str(self.certificate))
        await server.load_private_key(str(self.private_key))
        policies = [getattr(ua.SecurityPolicyType, f"Basic256Sha256_{mode}")
                    for mode in self.sec.modes]
        if self.sec.allow_unencrypted:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        self.trusted.mkdir(parents=True, exist_ok=True)
        server.set_certificate_validator(self._validate)
        cert = _load(self.certificate, "opcua.security.certificate")
        log.info("OPC UA server certificate %s (SHA-1 thumbprint %s); trusted clients in %s",
                 self.certificate, thumbprint(cert), self.trusted)

    def user_of(self, certificate: Any) -> str | None:
        """The user name of an X509 user token's certificate (asyncua hands over the
        DER bytes whose signature it verified), or None."""
        if isinstance(certificate, bytes | bytearray):
            certificate = uacrypto.x509_from_der(bytes(certificate))
        return self._users.get(certificate.fingerprint(hashes.SHA256()).hex())

    def _ensure(self, uri: str) -> None:
        have_cert, have_key = self.certificate.exists(), self.private_key.exists()
        if have_cert and have_key:
            return
        if have_cert or have_key:
            present, missing = ((self.certificate, self.private_key) if have_cert
                                else (self.private_key, self.certificate))
            raise FileNotFoundError(
                f"opcua.security: {present} exists but {missing} does not; restore it, or "
                "remove both to have a new self-signed pair made")
        host = socket.gethostname()
        key = generate_private_key()
        cert = generate_self_signed_app_certificate(
            key, f"Inspector {self.cfg.station.station}", {"organizationName": "Inspector"},
            [x509.UniformResourceIdentifier(uri), x509.DNSName(host)],
            extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            days=365)
        self.private_key.parent.mkdir(parents=True, exist_ok=True)
        self.certificate.parent.mkdir(parents=True, exist_ok=True)
        self.private_key.touch(mode=0o600)
        self.private_key.write_bytes(dump_private_key_as_pem(key))
        self.certificate.write_bytes(cert.public_bytes(Encoding.DER))
        log.warning("OPC UA: made a self-signed server certificate %s for %s (valid one "
                    "year); give its thumbprint %s to the clients that must trust it",
                    self.certificate, host, thumbprint(cert))

    async def _validate(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        try:
            if not any(self.trusted.iterdir()):  # asyncua cannot build an empty store
                raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
            store = TrustStore([self.trusted], [])
            await store.load()
            validator = CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION
                | CertificateValidatorOptions.PEER_CLIENT, store)
            await validator.validate(cert, app)
        except ServiceError as exc:
            name = f"{thumbprint(cert)}.der"
            try:
                self.rejected.mkdir(parents=True, exist_ok=True)
                (self.rejected / name).write_bytes(cert.public_bytes(Encoding.DER))
            except OSError as err:
                log.error("opcua: could not keep the rejected certificate: %s", err)
            log.warning("opcua: refused client %s (%s): %s; its certificate is %s",
                        app.ApplicationUri, cert.subject.rfc4514_string(),
                        status_codes.get_name_and_doc(exc.code)[0], self.rejected / name)
            raise


def _load(path: Path, field: str) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"{field}: {path}: {exc.strerror or exc}") from None
    try:
        return uacrypto.x509_from_der(data) if not data.startswith(b"-----") else \
            x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ValueError(f"{field}: {path} is not a DER or PEM certificate: {exc}") from None
