//go:build tools

// Package tools names the commands tools/install-kube-apiserver builds, so go.mod and go.sum pin
// everything they need.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
