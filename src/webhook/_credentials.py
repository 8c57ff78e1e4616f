"""The webhook's credentials: one Juju secret the leader owns and every unit reads.

It holds the bearer token kube-apiserver must send (the webhook kubeconfig's
``users[].user.token``), the token it replaced while that one stays accepted, and the charm's
own CA with the serving certificate it issued, for when no certificates provider is related.
The secret's ID and a change counter sit in the peer relation's app databag: the counter is
how the other units learn of a change (peer relation-changed), and holds nothing secret.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field, replace

import ops

from audit_intake.config import AcceptedToken, token_sha256
from webhook._own_ca import RENEW_BEFORE, IssuedPair, issue_serving, new_ca
from webhook._tls import CertificateSans, WebhookTls

logger = logging.getLogger(__name__)

CREDENTIALS_LABEL = "webhook-credentials"
ID_KEY = "webhook-credentials-id"
CHANGED_KEY = "webhook-credentials-changed"
TOKEN_BYTES = 32


@dataclass(frozen=True)
class Credentials:
    """What the secret holds; nothing of it appears in a repr."""

    token: str = field(repr=False)
    ca: IssuedPair = field(repr=False)
    previous_token: str = field(default="", repr=False)
    previous_expires: float = 0.0
    serving: IssuedPair | None = field(default=None, repr=False)
    serving_sans: str = ""
    """The SANs the serving certificate was issued for (`CertificateSans` as JSON)."""

    @property
    def token_sha256(self) -> str:
        """The token's fingerprint, as the intake compares it and the peer records name it."""
        return token_sha256(self.token)

    def accepted(self) -> tuple[AcceptedToken, ...]:
        """The tokens the intake lets in: the current one, and the previous until it expires."""
        current = AcceptedToken(self.token_sha256)
        if not self.previous_token or self.previous_expires <= time.time():
            return (current,)
        return (current, AcceptedToken(token_sha256(self.previous_token), self.previous_expires))

    def serving_tls(self) -> WebhookTls | None:
        """The charm's own certificate as the intake serves it, once the leader issued one."""
        if self.serving is None:
            return None
        _, ips, dns = json.loads(self.serving_sans)
        pem = self.serving.certificate + self.ca.certificate + self.serving.private_key
        return WebhookTls(pem.encode(), self.ca.certificate, frozenset(ips), frozenset(dns))

    def with_serving(self, sans: CertificateSans) -> Credentials:
        """These credentials with a serving certificate for ``sans`` issued by the own CA."""
        return replace(self, serving=issue_serving(self.ca, sans), serving_sans=_sans_text(sans))

    def serves(self, sans: CertificateSans) -> bool:
        """Whether the serving certificate names ``sans`` and is not due for renewal."""
        if self.serving is None or self.serving_sans != _sans_text(sans):
            return False
        return self.serving.not_after - RENEW_BEFORE > datetime.datetime.now(datetime.UTC)

    def to_content(self) -> dict[str, str]:
        """The secret's content (Juju keys: lowercase letters, digits and hyphens)."""
        content = {"token": self.token, **_pair("ca", self.ca)}
        if self.previous_token:
            content["previous-token"] = self.previous_token
            content["previous-expires"] = repr(self.previous_expires)
        if self.serving is not None:
            content.update(_pair("serving", self.serving))
            content["serving-sans"] = self.serving_sans
        return content

    @classmethod
    def from_content(cls, content: dict[str, str]) -> Credentials:
        """Read `to_content` back; KeyError or ValueError when it is not one."""
        serving = _read_pair("serving", content) if "serving-certificate" in content else None
        return cls(
            token=content["token"],
            ca=_read_pair("ca", content),
            previous_token=content.get("previous-token", ""),
            previous_expires=float(content.get("previous-expires", "0")),
            serving=serving,
            serving_sans=content.get("serving-sans", ""),
        )


def _pair(prefix: str, pair: IssuedPair) -> dict[str, str]:
    return {
        f"{prefix}-certificate": pair.certificate,
        f"{prefix}-key": pair.private_key,
        f"{prefix}-not-after": pair.not_after.isoformat(),
    }


def _read_pair(prefix: str, content: dict[str, str]) -> IssuedPair:
    return IssuedPair(
        content[f"{prefix}-certificate"],
        content[f"{prefix}-key"],
        datetime.datetime.fromisoformat(content[f"{prefix}-not-after"]),
    )


def _sans_text(sans: CertificateSans) -> str:
    return json.dumps([sans.common_name, list(sans.ips), list(sans.dns)])


def token_fingerprint(token: str) -> str:
    """A short, one-way name for a token (for logs): never the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class WebhookCredentials:
    """The application's credentials secret, found through the peer relation."""

    def __init__(self, model: ops.Model, peer_relation: str):
        self._model = model
        self._relation_name = peer_relation

    def current(self) -> Credentials | None:
        """The credentials; the leader creates them the first time. None while unknown here."""
        peers = self._model.get_relation(self._relation_name)
        if peers is None:
            return None
        secret_id = peers.data[self._model.app].get(ID_KEY)
        if secret_id is None:
            return self._create(peers) if self._model.unit.is_leader() else None
        try:
            content = self._model.get_secret(id=secret_id).get_content(refresh=True)
            return Credentials.from_content(content)
        except (ops.SecretNotFoundError, ops.ModelError, KeyError, ValueError) as exc:
            logger.error("the webhook credentials secret cannot be read: %s", type(exc).__name__)
            return None

    def serving_for(self, credentials: Credentials, sans: CertificateSans) -> Credentials:
        """Leader: issue the serving certificate for ``sans`` when it lacks them or ages out."""
        if credentials.serves(sans) or not self._model.unit.is_leader():
            return credentials
        updated = credentials.with_serving(sans)
        self._store(updated)
        return updated

    def rotate_token(self, keep_previous_seconds: float) -> Credentials:
        """Leader: a new token; the old one stays accepted for ``keep_previous_seconds``.

        Raises ops.ModelError (or a subclass) when the secret cannot be written.
        """
        credentials = self.current()
        if credentials is None:
            raise ops.ModelError("the webhook credentials do not exist yet")
        updated = replace(
            credentials,
            token=secrets.token_urlsafe(TOKEN_BYTES),
            previous_token=credentials.token if keep_previous_seconds > 0 else "",
            previous_expires=time.time() + keep_previous_seconds,
        )
        self._store(updated)
        logger.info(
            "webhook token rotated (now %s); the previous one %s",
            token_fingerprint(updated.token),
            f"is accepted for {keep_previous_seconds:g} s" if keep_previous_seconds else "is not",
        )
        return updated

    def _create(self, peers: ops.Relation) -> Credentials:
        credentials = Credentials(
            token=secrets.token_urlsafe(TOKEN_BYTES),
            ca=new_ca(f"{self._model.app.name} audit webhook CA"),
        )
        secret = self._model.app.add_secret(
            credentials.to_content(),
            label=CREDENTIALS_LABEL,
            description="falco-k8s audit webhook: the apiserver's bearer token and the own CA",
        )
        peers.data[self._model.app].update({ID_KEY: str(secret.id), CHANGED_KEY: "1"})
        return credentials

    def _store(self, credentials: Credentials) -> None:
        peers = self._model.get_relation(self._relation_name)
        assert peers is not None  # credentials were read through it
        app_data = peers.data[self._model.app]
        self._model.get_secret(id=app_data[ID_KEY]).set_content(credentials.to_content())
        app_data[CHANGED_KEY] = str(int(app_data.get(CHANGED_KEY, "0")) + 1)
