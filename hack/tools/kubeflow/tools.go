//go:build tools

// Package tools pins the peer controller bench/operator_vs_kubeflow.py runs against ours:
// Kubeflow's training-operator (PyTorchJob with elasticPolicy), built by hack/build-kubeflow.sh.
package tools

import (
	_ "github.com/kubeflow/training-operator/cmd/training-operator.v1"
)
