//go:build tools

// Package tools pins the versions of developer tools (golangci-lint) apart
// from the product's dependencies.
package tools

import _ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
