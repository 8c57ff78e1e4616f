"""The charm's own CA for the webhook, when no certificates provider is related.

kube-apiserver sends the webhook kubeconfig's credentials over https only (client-go reads a
kubeconfig's user only for a TLS server: ``tools/clientcmd/client_config.go``), so the intake
always serves TLS. Pure: PEM text in and out; ``cryptography`` is imported only here, and only
the leader calls this, when it creates the CA or issues the serving certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from webhook._tls import CertificateSans

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

CA_DAYS = 3650
LEAF_DAYS = 365
# The leaf is issued again this long before it expires (any hook of the leader may do it).
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class IssuedPair:
    """A certificate and its private key, PEM, and when the certificate expires."""

    certificate: str
    private_key: str = field(repr=False)
    not_after: datetime.datetime


def new_ca(name: str) -> IssuedPair:
    """A self-signed CA (EC P-256) named ``name``."""
    from cryptography import x509  # noqa: PLC0415 - only the leader issuing pays the import
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=CA_DAYS)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
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
    return IssuedPair(_certificate_pem(certificate), _key_pem(key), not_after)


def issue_serving(ca: IssuedPair, sans: CertificateSans) -> IssuedPair:
    """A serving certificate (EC P-256) for ``sans``, signed by ``ca``."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    ca_cert = x509.load_pem_x509_certificate(ca.certificate.encode())
    ca_key = serialization.load_pem_private_key(ca.private_key.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the webhook CA key is not the EC key this charm creates")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in sans.ips]
    names += [x509.DNSName(name) for name in sans.dns]
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, sans.common_name)] if sans.common_name else []
    )
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=LEAF_DAYS)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return IssuedPair(_certificate_pem(certificate), _key_pem(key), not_after)


def _certificate_pem(certificate: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
