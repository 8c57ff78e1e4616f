"""The `certificates` relation (tls-certificates) for the audit webhook.

The only module that knows the relation library: the charm asks it for certificates covering
the webhook's addresses and gets back plain `WebhookTls` data, checked against this unit's key.
Each unit has its own key and certificate (the library's UNIT mode); all come from the one CA.
"""

from __future__ import annotations

import logging

import ops
from charmlibs.interfaces import tls_certificates as tls

from webhook_tls import CertificateSans, WebhookTls, webhook_tls

logger = logging.getLogger(__name__)


class WebhookCertificates:
    """Requests the webhook's certificate and reads back the one the provider issued."""

    def __init__(self, charm: ops.CharmBase, relation_name: str):
        self._model = charm.model
        self._relation_name = relation_name
        self._sans: CertificateSans | None = None
        # Requests are a callable: the SANs are known only once this hook read the Service.
        self._requirer = tls.TLSCertificatesRequiresV4(
            charm, relation_name, certificate_requests=self._requests, mode=tls.Mode.UNIT
        )

    @property
    def related(self) -> bool:
        """Whether a certificates provider is related at all."""
        return self._model.get_relation(self._relation_name) is not None

    def request(self, sans: CertificateSans) -> None:
        """Ask for a certificate naming ``sans``; a request for other SANs is replaced."""
        if not self.related:
            return
        self._sans = sans
        self._requirer.sync()

    def current(self) -> WebhookTls | None:
        """The issued certificate with this unit's key, or None before one is issued.

        Raises:
            WebhookTlsError: the issued certificate cannot be served (unparsable, or not for
                this unit's key).
        """
        if not self.related:
            return None
        certificates, key = self._requirer.get_assigned_certificates()
        if not certificates or key is None:
            return None
        issued = certificates[-1]
        return webhook_tls(
            str(issued.certificate),
            [str(certificate) for certificate in issued.chain],
            str(issued.ca),
            str(key),
        )

    def _requests(
        self, _: tls.ProviderCapabilities | None
    ) -> list[tls.CertificateRequestAttributes]:
        if self._sans is None:
            # The library's own handlers run before the charm knows the Service's address:
            # keep what is already requested rather than withdraw it.
            return [
                tls.CertificateRequestAttributes.from_csr(
                    request.certificate_signing_request, request.is_ca
                )
                for request in self._requirer.get_csrs_from_requirer_relation_data()
            ]
        return [
            tls.CertificateRequestAttributes(
                common_name=self._sans.common_name,
                sans_dns=self._sans.dns,
                sans_ip=self._sans.ips,
            )
        ]
