#!/usr/bin/env bash
# Runs every example in examples/ and fails on the first non-zero exit. `bench_report` runs in
# its `--quick` smoke mode (seconds); its real figures come from
# `cargo run --release --example bench_report` (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --examples
for file in examples/*.rs; do
    name="$(basename "$file" .rs)"
    args=()
    if [ "$name" = bench_report ]; then
        args=(--quick)
    fi
    echo "=== cargo run --example $name ${args[*]:-}"
    if ! cargo run --quiet --example "$name" -- "${args[@]}"; then
        echo "example $name failed" >&2
        exit 1
    fi
done
echo "all examples ran"
