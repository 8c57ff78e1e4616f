"""The `certificates` relation (tls-certificates) for the audit webhook.

The only module that knows the relation library: the charm asks it for certificates covering
the webhook's addresses and gets back plain `WebhookTls` data, checked against this unit's key.
Each unit has its own key and certificate (the library's UNIT mode); all come from the one CA.

The library's own handlers (relation-created, relation-changed, leader-elected) raise when the
provider's data holds a PEM that does not parse, or JSON nested past Python's recursion limit:
the hook fails before the charm's code runs. So that data is checked first, with the library's
own parsers, and while it does not parse the library is not set up at all in that hook.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import ops

from webhook._tls import CertificateSans, WebhookTls, WebhookTlsError, webhook_tls

if TYPE_CHECKING:
    from charmlibs.interfaces import tls_certificates as tls

logger = logging.getLogger(__name__)

# The library raises this when the provider's databag holds a certificate that does not parse.
UNREADABLE = "certificates: the provider's relation data does not parse"
# The provider's app databag fields the library decodes (tls-certificates interface v1).
_PROVIDER_FIELDS = ("certificates", "request_errors", "capabilities")


class WebhookCertificates:
    """Requests the webhook's certificate and reads back the one the provider issued."""

    def __init__(self, charm: ops.CharmBase, relation_name: str):
        self._model = charm.model
        self._relation_name = relation_name
        self._sans: CertificateSans | None = None
        self._requirer: tls.TLSCertificatesRequiresV4 | None = None
        relation = self._model.get_relation(relation_name)
        self._unreadable = relation is not None and not _provider_data_parses(relation)
        if relation is not None and not self._unreadable:
            # The library and `cryptography` cost every hook ~130 ms to import: only a unit
            # with a provider related loads them (a relation is listed from relation-created on).
            from charmlibs.interfaces import tls_certificates  # noqa: PLC0415

            # Requests are a callable: the SANs are known only once this hook read the Service.
            self._requirer = tls_certificates.TLSCertificatesRequiresV4(
                charm,
                relation_name,
                certificate_requests=self._requests,
                mode=tls_certificates.Mode.UNIT,
            )

    @property
    def related(self) -> bool:
        """Whether a certificates provider is related at all."""
        return self._model.get_relation(self._relation_name) is not None

    @property
    def library_observing(self) -> bool:
        """Whether the relation library is set up in this hook (it observes secret-remove too)."""
        return self._requirer is not None

    def request(self, sans: CertificateSans) -> None:
        """Ask for a certificate naming ``sans``; a request for other SANs is replaced."""
        if self._requirer is None:
            return
        from charmlibs.interfaces.tls_certificates import TLSCertificatesError  # noqa: PLC0415

        self._sans = sans
        try:
            self._requirer.sync()
        except TLSCertificatesError as exc:
            # `current` says so in the status; the request is retried on the next hook.
            logger.warning("certificate request not synced: %s", exc)

    def current(self) -> WebhookTls | None:
        """The newest certificate issued for this unit's key, or None before one is issued.

        A certificate for the current request wins; until the provider answers a renewal or a
        request for new SANs, the one it issued before (still in its databag, still for this
        key) keeps the webhook on https rather than dropping it to plain HTTP.

        Raises:
            WebhookTlsError: the provider's data does not parse, or the chosen certificate
                cannot be served (not for this unit's key).
        """
        if self._unreadable:
            raise WebhookTlsError(UNREADABLE)
        if self._requirer is None:
            return None
        from charmlibs.interfaces.tls_certificates import TLSCertificatesError  # noqa: PLC0415

        key = self._requirer.private_key
        if key is None:
            return None
        requested = {
            str(request.certificate_signing_request)
            for request in self._requirer.get_csrs_from_requirer_relation_data()
        }
        try:
            provided = self._requirer.get_provider_certificates()
        except TLSCertificatesError:
            raise WebhookTlsError(UNREADABLE) from None
        if not provided and self._published():
            # The library drops data it cannot validate with a log line: say so instead.
            raise WebhookTlsError(UNREADABLE)
        now = datetime.now(UTC)
        usable = [
            issued
            for issued in provided
            if not issued.revoked
            and issued.certificate.expiry_time > now
            and issued.certificate.matches_private_key(key)
        ]
        if not usable:
            return None
        issued = max(
            usable,
            key=lambda c: (
                str(c.certificate_signing_request) in requested,
                c.certificate.expiry_time,
            ),
        )
        return webhook_tls(
            str(issued.certificate),
            [str(certificate) for certificate in issued.chain],
            str(issued.ca),
            str(key),
        )

    def _published(self) -> bool:
        """Whether the provider's data holds certificates, or anything but none."""
        relation = self._model.get_relation(self._relation_name)
        raw = relation.data[relation.app].get("certificates") if relation and relation.app else ""
        return json.loads(raw or "null") not in ([], None)

    def _requests(
        self, _: tls.ProviderCapabilities | None
    ) -> list[tls.CertificateRequestAttributes]:
        from charmlibs.interfaces.tls_certificates import (  # noqa: PLC0415
            CertificateRequestAttributes,
        )

        assert self._requirer is not None  # the library calls back only the requirer it has
        if self._sans is None:
            # The library's own handlers run before the charm knows the Service's address:
            # keep what is already requested rather than withdraw it.
            return [
                CertificateRequestAttributes.from_csr(
                    request.certificate_signing_request, request.is_ca
                )
                for request in self._requirer.get_csrs_from_requirer_relation_data()
            ]
        return [
            CertificateRequestAttributes(
                common_name=self._sans.common_name,
                sans_dns=self._sans.dns,
                sans_ip=self._sans.ips,
            )
        ]


def _provider_data_parses(relation: ops.Relation) -> bool:
    """Whether the library's handlers can read the provider's data without raising.

    Every field must be JSON (the library catches only a JSONDecodeError) and every certificate
    and request a PEM its parsers load; shapes it can validate it refuses by itself.
    """
    from charmlibs.interfaces.tls_certificates import (  # noqa: PLC0415
        Certificate,
        CertificateSigningRequest,
        TLSCertificatesError,
    )

    data: Mapping[str, str] = relation.data[relation.app] if relation.app else {}
    try:
        fields = {key: json.loads(data[key]) for key in _PROVIDER_FIELDS if key in data}
    except (ValueError, RecursionError):
        return False
    entries: object = fields.get("certificates")
    for entry in cast("list[object]", entries) if isinstance(entries, list) else []:
        issued = cast("dict[str, object]", entry) if isinstance(entry, dict) else {}
        chain = issued.get("chain")
        pems = [issued.get("certificate"), issued.get("ca")]
        pems += cast("list[object]", chain) if isinstance(chain, list) else []
        try:
            for pem in pems:
                if isinstance(pem, str):
                    Certificate.from_string(pem)
            if isinstance(csr := issued.get("certificate_signing_request"), str):
                CertificateSigningRequest.from_string(csr)
        except TLSCertificatesError:
            return False
    return True
