#!/usr/bin/env bash
# versitygw: the real S3 gateway the bucket, pull and CLI integration tests
# run against (internal/testutil.StartVersityGW). Idempotent: a no-op when
# the pinned version is already installed.
set -euo pipefail

VERSION=v1.8.0
GOBIN=${GOBIN:-/root/go/bin}
BIN="$GOBIN/versitygw"

if [[ -x "$BIN" ]] && go version -m "$BIN" 2>/dev/null |
	grep -Eq "^[[:space:]]*mod[[:space:]]+github.com/versity/versitygw[[:space:]]+$VERSION([[:space:]]|$)"; then
	exit 0
fi

echo "installing versitygw $VERSION into $GOBIN (about a minute cold)"
mkdir -p "$GOBIN"
# Outside any module, so the project's go.mod is neither used nor changed.
cd /tmp
GOBIN="$GOBIN" GOFLAGS= go install "github.com/versity/versitygw/cmd/versitygw@$VERSION"
