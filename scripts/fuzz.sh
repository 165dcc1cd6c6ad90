#!/usr/bin/env bash
# Fuzz kubelab's input parsers with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [SECONDS]     each target for SECONDS (default 60)
#   FUZZ_TARGETS=load_lab scripts/fuzz.sh 3600    one target for an hour
#
# Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# The corpus grows in fuzz/corpus/<target>/ (seeded from the repository's
# labs and fixtures); crashes land in fuzz/artifacts/<target>/ and replay
# with `cargo +nightly fuzz run <target> <file>`. Both are git-ignored.
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
  ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz on a nightly toolchain is needed:" >&2
  echo "  rustup toolchain install nightly && cargo install cargo-fuzz" >&2
  exit 2
fi

mkdir -p fuzz/corpus/load_lab fuzz/corpus/ini_inventory
cp labs/*.yaml tests/labs/valid/*.yaml tests/labs/invalid/*.yaml fuzz/corpus/load_lab/
for f in tests/fixtures/ansible/*/*; do
  case "$f" in
    *.yml|*.yaml) ;;
    *) cp "$f" "fuzz/corpus/ini_inventory/$(echo "$f" | tr / _)" ;;
  esac
done

for target in ${FUZZ_TARGETS:-load_lab ini_inventory}; do
  echo "== fuzzing $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
done
