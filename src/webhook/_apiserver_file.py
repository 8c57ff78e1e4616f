"""Which webhook file the kube-apiserver is taken to hold, remembered in the peer relation.

The apiserver's file is the admin's to replace, so the charm can only remember what it handed
out: the file it first served (the leader records it once, in the application databag) and
each file `get-webhook-config` returned (in the databag of the unit that ran it). The latest
record is what the apiserver is taken to hold; `webhook_tls.outdated_apiserver_file` compares
it with what Falco serves now.
"""

from __future__ import annotations

import time

import ops

from webhook._tls import WebhookIdentity, outdated_apiserver_file

BASELINE_KEY = "apiserver-webhook-file"
HANDED_OUT_KEY = "apiserver-webhook-file-fetched"


class ApiserverFileRecords:
    """The records in one peer relation; without the relation nothing is known or asked."""

    def __init__(self, model: ops.Model, peer_relation: str):
        self._model = model
        self._relation_name = peer_relation

    def outdated(self, served: WebhookIdentity, *, settled: bool = True) -> str | None:
        """Why the apiserver's file must be replaced, or None; the leader sets the baseline.

        ``settled`` False (a provider's certificate is on its way): what is served now is not
        taken as what the admin will hold.
        """
        peers = self._model.get_relation(self._relation_name)
        if peers is None:
            return None
        app_data = peers.data[self._model.app]
        if settled and self._model.unit.is_leader() and BASELINE_KEY not in app_data:
            app_data[BASELINE_KEY] = served.record(time.time())
        records = [app_data.get(BASELINE_KEY, "")]
        units = {self._model.unit, *peers.units}
        records += [peers.data[unit].get(HANDED_OUT_KEY, "") for unit in units]
        return outdated_apiserver_file(served, records)

    def handed_out(self, identity: WebhookIdentity) -> None:
        """The admin was just given this file (by `get-webhook-config` on this unit)."""
        peers = self._model.get_relation(self._relation_name)
        if peers is not None:
            peers.data[self._model.unit][HANDED_OUT_KEY] = identity.record(time.time())
