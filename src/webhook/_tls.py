"""TLS for the audit webhook: SANs, the intake's PEM, and whether the apiserver's file is current.

Pure: plain data in and out, no ``ops`` and no relation library, so the charm, its action and
the tests share it. The private key only ever lives in `WebhookTls.pem`, which no repr, log
line or error message shows.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from options import InvalidStateError
from webhook._apiserver_side import NODE_LOOPBACK, WebhookAddress, webhook_resource_name

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

# An X.509 common name may hold at most 64 characters; the SANs carry the names anyway.
_COMMON_NAME_MAX = 64


class WebhookTlsError(InvalidStateError):
    """The relation's certificate cannot be served; the message never quotes key material."""


@dataclass(frozen=True)
class CertificateSans:
    """What the webhook certificate must name: every address the webhook file can use."""

    common_name: str | None
    dns: tuple[str, ...]
    ips: tuple[str, ...]


def certificate_sans(address: WebhookAddress, app: str, namespace: str) -> CertificateSans:
    """The Service's cluster IP, the loopback for a NodePort, and the Service's DNS names."""
    service = webhook_resource_name(app)
    dns = (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )
    ips = [str(ipaddress.ip_address(address.cluster_ip))]
    if address.service_type == "NodePort":
        ips.append(NODE_LOOPBACK)
    common_name = service if len(service) <= _COMMON_NAME_MAX else None
    return CertificateSans(common_name, dns, tuple(ips))


@dataclass(frozen=True)
class WebhookTls:
    """A certificate the intake can serve: its PEM, and the CA the apiserver must trust."""

    pem: bytes = field(repr=False)  # certificate, chain, then the private key
    ca_cert: str
    ip_sans: frozenset[str] = frozenset()
    dns_sans: frozenset[str] = frozenset()

    @property
    def ca_sha256(self) -> str:
        """Which CA the apiserver must trust, without repeating the CA itself."""
        return hashlib.sha256(self.ca_cert.strip().encode()).hexdigest()

    def missing(self, sans: CertificateSans) -> list[str]:
        """Addresses the certificate does not name, so the apiserver would refuse it there."""
        return [ip for ip in sans.ips if ip not in self.ip_sans] + [
            name for name in sans.dns if name not in self.dns_sans
        ]


def webhook_tls(
    certificate: str, chain: Sequence[str], ca_cert: str, private_key: str
) -> WebhookTls:
    """Check the relation's certificate against this unit's key and build the intake's PEM.

    The intake loads the one file with Python's ``load_cert_chain``: the certificate blocks
    (leaf first) and the private key. This check is the PEM's gate: a pair that does not load
    would keep the intake from taking the next connection's certificate.

    Raises:
        WebhookTlsError: a certificate or the key does not parse, or they do not belong
            together (the message names what, never the key).
    """
    # `cryptography` costs every hook ~100 ms to import: only a unit with a certificate pays.
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    leaf = _certificate(certificate, "certificate")
    _certificate(ca_cert, "CA certificate")
    intermediates = [_certificate(pem, "chain certificate") for pem in chain]
    try:
        key: PrivateKeyTypes = serialization.load_pem_private_key(
            private_key.encode(), password=None
        )
    except (ValueError, TypeError):
        raise WebhookTlsError("certificates: this unit's private key does not parse") from None
    if _public(key.public_key()) != _public(leaf.public_key()):
        raise WebhookTlsError(
            "certificates: the provider's certificate is not for this unit's private key"
        )
    blocks = [leaf] + [cert for cert in intermediates if cert != leaf]
    pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in blocks)
    pem += key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ips, names = _sans(leaf)
    return WebhookTls(pem, ca_cert.strip() + "\n", ips, names)


def _certificate(pem: str, what: str) -> x509.Certificate:
    from cryptography.x509 import load_pem_x509_certificate  # noqa: PLC0415

    try:
        return load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise WebhookTlsError(f"certificates: the provider's {what} does not parse") from None


def _public(key: PublicKeyTypes) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _sans(certificate: x509.Certificate) -> tuple[frozenset[str], frozenset[str]]:
    from cryptography import x509  # noqa: PLC0415

    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset(), frozenset()
    ips = frozenset(str(ip) for ip in names.get_values_for_type(x509.IPAddress))
    return ips, frozenset(names.get_values_for_type(x509.DNSName))


# -- the kube-apiserver's side ------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookIdentity:
    """What the apiserver's webhook file pins: where it posts, which CA, which token.

    ``ca_sha256`` "" is a plain-HTTP file and ``token_sha256`` "" one without a token, as
    files from before the audit intake were.
    """

    url: str
    ca_sha256: str = ""
    token_sha256: str = ""

    @classmethod
    def served(
        cls, address: WebhookAddress, tls: WebhookTls, token_sha256: str
    ) -> WebhookIdentity:
        """The identity of the webhook file the charm renders now."""
        return cls(address.url, tls.ca_sha256, token_sha256)

    def record(self, at: float) -> str:
        """This identity as handed out (or assumed) at time ``at``, for the peer databag."""
        fields = {"url": self.url, "ca_sha256": self.ca_sha256, "token_sha256": self.token_sha256}
        return json.dumps({**fields, "at": at})


def outdated_apiserver_file(served: WebhookIdentity, records: Iterable[str]) -> str | None:
    """Why the apiserver's file no longer matches what Falco serves, or None when it does.

    ``records`` are `WebhookIdentity.record` texts: the file assumed in place when the charm
    first served one, and each file `get-webhook-config` handed out since; the latest counts.
    """
    latest: tuple[float, WebhookIdentity] | None = None
    for text in records:
        try:
            data = json.loads(text)
            held = WebhookIdentity(
                str(data["url"]), str(data["ca_sha256"]), str(data.get("token_sha256", ""))
            )
            entry = (float(data["at"]), held)
        except (ValueError, TypeError, KeyError, RecursionError):
            continue  # not a record this charm wrote: ignore it rather than nag
        if latest is None or entry[0] >= latest[0]:
            latest = entry
    if latest is None or latest[1] == served:
        return None
    reason = _replaced_because(latest[1], served)
    return f"kube-apiserver webhook file must be replaced ({reason}): run get-webhook-config"


def _replaced_because(held: WebhookIdentity, served: WebhookIdentity) -> str:
    """The first difference an admin would care about, in a few words."""
    if held.url != served.url and held.ca_sha256 == served.ca_sha256:
        return "its address changed"
    if not held.ca_sha256:
        return "the webhook now needs TLS and a token"
    if held.ca_sha256 != served.ca_sha256:
        return "the TLS CA changed"
    if not held.token_sha256:
        return "the webhook now needs a token"
    return "the webhook token was rotated"


def tls_notes(tls: WebhookTls, sans: CertificateSans, *, awaited: bool) -> list[str]:
    """What the status should say about the webhook's TLS, when anything.

    ``awaited``: a certificates provider is related but has not issued one yet, so the
    charm's own CA serves meanwhile.
    """
    notes = ["TLS by the charm's CA until the provider's certificate"] if awaited else []
    if missing := tls.missing(sans):
        notes.append(f"webhook certificate lacks {', '.join(missing)}")
    return notes
