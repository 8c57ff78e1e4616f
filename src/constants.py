"""Names, paths and ports that several modules and the tests rely on: one place to change them."""

FALCO_CONTAINER = "falco"
FALCO_SERVICE = "falco"
FORWARDER_CONTAINER = "forwarder"
FORWARDER_SERVICE = "alert-forwarder"

FALCO_BIN = "/usr/bin/falco"
FALCO_CONFIG_DIR = "/etc/falco"
FALCO_CONFIG = f"{FALCO_CONFIG_DIR}/falco.yaml"
FALCO_RULES_D = f"{FALCO_CONFIG_DIR}/rules.d"
FALCO_CUSTOM_RULES = f"{FALCO_RULES_D}/custom_rules.yaml"
FALCO_STAGING_DIR = f"{FALCO_CONFIG_DIR}/staging"
K8S_AUDIT_RULES = f"{FALCO_CONFIG_DIR}/k8s_audit_rules.yaml"
# The charm's own rules, loaded between the stock rules and custom_rules.
CHARM_RULES = f"{FALCO_CONFIG_DIR}/falco_k8s_rules.yaml"
WEBHOOK_CONFIG_FILE = f"{FALCO_CONFIG_DIR}/webhook-config.yaml"
# k8saudit's certificate, chain and private key in one PEM (its sslCertificate), mode 0600.
WEBHOOK_PEM = f"{FALCO_CONFIG_DIR}/k8saudit-webhook.pem"
PLUGINS_DIR = "/usr/share/falco/plugins"

# Artefacts the charm carries (built at pack time into its plugins/ directory), because the
# upstream image lacks them: file name there -> path in the container.
PAYLOAD_DIR = "plugins"
PLUGIN_FILES = {
    "libk8saudit.so": f"{PLUGINS_DIR}/libk8saudit.so",
    "libjson.so": f"{PLUGINS_DIR}/libjson.so",
}
PLUGIN_MANIFEST = f"{PLUGINS_DIR}/.falco-k8s-bundle.sha256"
STOCK_RULES_FILE = "k8s_audit_rules.yaml"
CHARM_RULES_FILE = "src/falco/falco_k8s_rules.yaml"  # relative to the charm directory

WEBSERVER_PORT = 8765
K8SAUDIT_PORT = 9765
K8SAUDIT_PATH = "/k8s-audit"

FORWARDER_PORT = 9802
# The forwarder listens on every pod interface so Prometheus can scrape its /metrics (it serves
# only GET /healthz and /metrics: there is no alert intake to inject into).
FORWARDER_LISTEN_HOST = "0.0.0.0"  # noqa: S104
FORWARDER_PKG_DIR = "/opt/falco-forwarder"
FORWARDER_CONFIG = "/etc/falco-forwarder/config.json"

# One storage ("alert-log") mounted at the same place in both containers: Falco appends its
# JSON alerts to ALERT_LOG, the forwarder reads, rotates and retains it and keeps its
# checkpoints beside it.
ALERTS_DIR = "/var/lib/falco-alerts"
ALERT_LOG_DIR = f"{ALERTS_DIR}/log"
ALERT_LOG = f"{ALERT_LOG_DIR}/falco.log"
ALERT_STATE_DIR = f"{ALERTS_DIR}/state"

# Falco's priorities, most severe first (syslog order 0-7); config values are lowercase.
PRIORITIES = (
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "informational",
    "debug",
)

MIB = 1024 * 1024

# Relation names that more than one module uses, as metadata.yaml declares them; a sink
# relation only its kind reads is named on the kind (`SinkSource.relation`).
PEER_RELATION = "falco-peers"
CERTIFICATES_RELATION = "certificates"
METRICS_RELATION = "metrics-endpoint"
DASHBOARD_RELATION = "grafana-dashboard"
LOGGING_RELATION = "logging"
LOKI_SINK_RELATION = "send-loki-logs"
OTLP_SINK_RELATION = "send-otlp"
COS_RELATIONS = (
    METRICS_RELATION,
    DASHBOARD_RELATION,
    LOGGING_RELATION,
    LOKI_SINK_RELATION,
    OTLP_SINK_RELATION,
)
