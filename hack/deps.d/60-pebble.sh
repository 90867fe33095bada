#!/usr/bin/env bash
# Pebble: Let's Encrypt's ACME test server, the real CA the TLS integration
# tests (internal/testutil.StartPebble) and the sandbox validate against.
# Idempotent: a no-op when the pinned version is already installed.
set -euo pipefail

VERSION=v2.10.3
GOBIN=${GOBIN:-/root/go/bin}
BIN="$GOBIN/pebble"

if [[ -x "$BIN" ]] && go version -m "$BIN" 2>/dev/null |
	grep -Eq "^[[:space:]]*mod[[:space:]]+github.com/letsencrypt/pebble/v2[[:space:]]+$VERSION([[:space:]]|$)"; then
	exit 0
fi

echo "installing pebble $VERSION into $GOBIN"
mkdir -p "$GOBIN"
# Outside any module, so the project's go.mod is neither used nor changed.
cd /tmp
GOBIN="$GOBIN" GOFLAGS= go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$VERSION"
