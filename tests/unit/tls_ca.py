"""A test certificate authority, and a stand-in for a tls-certificates provider.

Real X.509 from the ``cryptography`` package (no fixtures on disk). `TestCa.issue` signs a CSR
the way a provider such as self-signed-certificates does: the CSR's subject and SANs, the CA as
issuer. `provider_databag` writes the provider's application databag in the interface's format
as charmlibs-interfaces-tls-certificates 1.12.0 reads it (``_ProviderApplicationData``: a JSON
list under ``certificates`` of ``ca``, ``certificate_signing_request``, ``certificate``,
``chain``); `requested_csrs` reads the requirer's unit databag
(``certificate_signing_requests``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

PEM = serialization.Encoding.PEM


class TestCa:
    """A self-signed CA that issues server certificates."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "falco-k8s test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(PEM).decode()

    def issue(self, csr_pem: str, *, days: int = 10) -> str:
        """Sign a CSR: its subject and SANs, this CA as issuer; PEM text."""
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        return self._sign(csr.subject, csr.public_key(), _sans(csr), days)

    def server_pem(self, ips: tuple[str, ...] = ("127.0.0.1",)) -> tuple[str, str]:
        """A fresh key and a certificate for ``ips``: (certificate PEM, PKCS8 key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8saudit")])
        cert = self._sign(subject, key.public_key(), x509.SubjectAlternativeName(names), 10)
        key_pem = key.private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return cert, key_pem

    def _sign(
        self,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        sans: x509.SubjectAlternativeName | None,
        days: int,
    ) -> str:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if sans is not None:
            builder = builder.add_extension(sans, critical=False)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(PEM).decode()


def _sans(csr: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def requested_csrs(unit_databag: Mapping[str, str]) -> list[str]:
    """The CSRs (PEM) a requirer unit put in its databag."""
    raw = unit_databag.get("certificate_signing_requests")
    return [entry["certificate_signing_request"] for entry in json.loads(raw)] if raw else []


def csr_sans(csr_pem: str) -> tuple[set[str], set[str]]:
    """A CSR's (IP SANs, DNS SANs)."""
    names = _sans(x509.load_pem_x509_csr(csr_pem.encode()))
    if names is None:
        return set(), set()
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return ips, set(names.get_values_for_type(x509.DNSName))


def provider_databag(issued: Mapping[str, tuple[TestCa, str]]) -> dict[str, str]:
    """The provider's app databag: for each CSR, its CA and certificate."""
    certificates = [
        {
            "ca": ca.pem,
            "certificate_signing_request": csr,
            "certificate": cert,
            "chain": [cert, ca.pem],
        }
        for csr, (ca, cert) in issued.items()
    ]
    return {"certificates": json.dumps(certificates)}
