"""The apiserver's side: cluster objects, credentials, the audit intake, the admin's file."""

from webhook._service import AuditWebhook

__all__ = ["AuditWebhook"]
