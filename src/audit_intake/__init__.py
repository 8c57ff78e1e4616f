"""Audit intake: the pod's door for kube-apiserver's audit webhook, in front of Falco's k8saudit.

Standard library only (Python >= 3.11), run in the forwarder container. It lets in only posts
that carry the webhook's bearer token, keeps every batch on disk (fsync) before it answers 200,
feeds the batches to k8saudit on the pod's loopback, and replays what k8saudit may not have
evaluated when its listener went away. It closes the connection after every answer, so
kube-proxy balances each batch on its own, and counts everything on its ``/metrics``.
"""
