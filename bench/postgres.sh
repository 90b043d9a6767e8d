#!/usr/bin/env bash
# bench/postgres.sh: bench/postgres (one vs two syncer instances on one
# PostgreSQL, 1,000 connections at 50 ms) beside a throwaway server.
# Flags go to bench/postgres (-connections, -latency, -concurrency, -instances).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/syncer" ./cmd/syncer
go build -o "$bin/pgbench" ./bench/postgres
.ci/postgres "$bin/pgbench" -syncer "$bin/syncer" "$@"
