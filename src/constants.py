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
# Where k8saudit read its certificate and key before TLS moved to the audit intake: a file an
# upgraded unit must not keep (the falco wing's file set says it must not exist).
LEGACY_WEBHOOK_PEM = f"{FALCO_CONFIG_DIR}/k8saudit-webhook.pem"
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
# The audit webhook: the Service's port, where the audit intake listens (TLS, a bearer token).
WEBHOOK_PORT = 9765
K8SAUDIT_PATH = "/k8s-audit"
# k8saudit's own listener, behind the intake: plain HTTP on the pod's loopback only.
K8SAUDIT_LOOPBACK = "127.0.0.1"
K8SAUDIT_PORT = 9766
# k8saudit's limit on a webhook body (its webhookMaxBatchSize, its default made explicit): the
# intake refuses a larger one (413) rather than keep what k8saudit would refuse.
K8SAUDIT_MAX_BATCH_BYTES = 12_582_912

FORWARDER_PORT = 9802
# The forwarder listens on every pod interface so Prometheus can scrape its /metrics (it serves
# only GET /healthz and /metrics: there is no alert intake to inject into).
FORWARDER_LISTEN_HOST = "0.0.0.0"  # noqa: S104
FORWARDER_PKG_DIR = "/opt/falco-forwarder"
FORWARDER_CONFIG = "/etc/falco-forwarder/config.json"

# The audit intake runs in the forwarder container (it has Python; Falco's image has none).
INTAKE_SERVICE = "audit-intake"
INTAKE_METRICS_PORT = 9803
INTAKE_LISTEN_HOST = "0.0.0.0"  # noqa: S104 - the Service targets the pod's address
INTAKE_PKG_DIR = "/opt/audit-intake"
INTAKE_CONFIG_DIR = "/etc/audit-intake"
INTAKE_CONFIG = f"{INTAKE_CONFIG_DIR}/config.json"
# The intake's certificate, chain and private key in one PEM, mode 0600.
INTAKE_PEM = f"{INTAKE_CONFIG_DIR}/webhook.pem"

# One storage ("alert-log") mounted at the same place in both containers: Falco appends its
# JSON alerts to ALERT_LOG, the forwarder reads, rotates and retains it and keeps its
# checkpoints beside it.
ALERTS_DIR = "/var/lib/falco-alerts"
ALERT_LOG_DIR = f"{ALERTS_DIR}/log"
ALERT_LOG = f"{ALERT_LOG_DIR}/falco.log"
ALERT_STATE_DIR = f"{ALERTS_DIR}/state"
# The intake keeps each batch here until Falco has it: it survives restarts of either container.
INTAKE_SPOOL_DIR = f"{ALERTS_DIR}/intake"

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
