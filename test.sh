#!/usr/bin/env bash
# Runs Vigil's test suite: everything, with the race detector on the
# concurrent packages. Tests needing root or network namespaces skip with a
# reason when those are missing (set VIGIL_REQUIRE_NETNS=1 to make them fail).
set -euo pipefail
cd "$(dirname "$0")"
go test -count=1 -timeout 20m ./...
go test -count=1 -race -timeout 20m ./internal/server/... ./internal/agent/... ./internal/mcast/... ./internal/store/... ./internal/mirror/... ./internal/updater/... ./internal/liveupdate/... ./internal/doctor/... ./internal/idleconn/...
