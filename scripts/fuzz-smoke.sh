#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30), starting from its checked-in
# seed corpus, and fails if any target finds a crash. Needs nightly and cargo-fuzz.
#
#   scripts/fuzz-smoke.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-30}
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${seconds}s"
  # Work on a copy so that a smoke run does not grow the checked-in corpus.
  work=$(mktemp -d)
  cp -r "corpus/$target/." "$work/"
  cargo +nightly fuzz run "$target" "$work" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 3
  rm -rf "$work"
done
