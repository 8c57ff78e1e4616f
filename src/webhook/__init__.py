"""The apiserver's side: the Service, ConfigMap and NetworkPolicy, its files, the webhook's TLS."""

from webhook._service import AuditWebhook, WebhookOutcome

__all__ = ["AuditWebhook", "WebhookOutcome"]
