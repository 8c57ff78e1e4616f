"""COS: scrape jobs, dashboards, alert rules and log forwarding, published only when related."""

from cos._hook import publish_if_related
from cos._loki_push import push_endpoints as loki_push_endpoints

__all__ = ["loki_push_endpoints", "publish_if_related"]
