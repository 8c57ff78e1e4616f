// Pins the Falco plugins' source for CI: `go mod download` checks each module against go.sum.
// Not built: tools/fetch-falco-plugins copies the modules out and runs tools/build-falco-plugins.
module falco-k8s/tools/falco-plugins

go 1.24

require (
	github.com/falcosecurity/plugins/plugins/json v0.7.4
	github.com/falcosecurity/plugins/plugins/k8saudit v0.18.0
)
