#!/usr/bin/env bash
# Runs Vigil's test suite: everything, with the race detector on the
# concurrent packages. Tests needing root or network namespaces skip with a
# reason when those are missing (set VIGIL_REQUIRE_NETNS=1 to make them fail).
# Every part always runs; the script fails when any failed.
set -uo pipefail
cd "$(dirname "$0")"
status=0
# The concurrent packages run once, under the race detector; the others
# once, without it (a race-detector run is the same tests with more checks,
# so running those packages twice found nothing the race run misses).
race=(server agent mcast store mirror definitions transport liveupdate doctor idleconn demo onaccess fanotify console auth relay lucache statelock)
pattern="^github.com/vigil-fleet/vigil/internal/($(IFS='|'; echo "${race[*]}"))(/|$)"
mapfile -t plain < <(go list ./... | grep -Ev "$pattern")
go test -count=1 -timeout 20m "${plain[@]}" || status=1
go test -count=1 -race -timeout 20m $(printf './internal/%s/... ' "${race[@]}") || status=1
# The load generator is a nested module (bench/, so that the product's
# go.mod does not carry nats-server): ./... above does not reach it.
(cd bench && go test -count=1 -timeout 20m ./...) || status=1
exit $status
