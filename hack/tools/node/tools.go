//go:build tools

// Package tools pins the node commands that hack/build-tools.sh builds for the real-node tests.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
