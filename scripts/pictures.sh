#!/usr/bin/env bash
# The README's pictures, as PNG under docs/: the topology of labs/ipv6.yaml
# as `kubelab graph` draws it, and a failing run's report as tests/report.rs
# renders it; both through Debian's headless Chromium, as a reader's
# browser shows them. Installs what it needs (scripts/deps.sh test).
#   bash scripts/pictures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test >/dev/null
cargo build --quiet --locked
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the graph: its SVG and the PNG of it at the SVG's own size
"${CARGO_TARGET_DIR:-target}"/debug/kubelab graph labs/ipv6.yaml -o docs/graph-ipv6.svg
read -r width height < <(sed -n '1s/.*width="\([0-9]*\)" height="\([0-9]*\)".*/\1 \2/p' docs/graph-ipv6.svg)
chromium --headless --no-sandbox --disable-gpu --no-first-run \
  --user-data-dir="$work/profile" --hide-scrollbars \
  --window-size="$width,$height" --screenshot="$work/graph.png" \
  "file://$PWD/docs/graph-ipv6.svg" 2>/dev/null
cp "$work/graph.png" docs/graph-ipv6.png

# the report: tests/report.rs renders it and keeps the screenshot
cargo test --quiet --locked --test report >/dev/null
cp target/test-artifacts/report-failed.png docs/report-failed.png
echo "docs/graph-ipv6.png (${width}x${height}), docs/report-failed.png"
