#!/usr/bin/env bash
# murmur-protocol is the sans-IO core: no async runtime, no networking, no ML framework, no wall
# clock and no operating-system randomness. Fails if any of them enters its normal dependency
# tree or its source.
set -euo pipefail
cd "$(dirname "$0")/.."

tree=$(cargo tree -p murmur-protocol -e normal --prefix none --locked)
banned='^(tokio|async-std|smol|mio|futures|libp2p[-a-z0-9]*|burn[-a-z0-9]*|getrandom|rand_os|ring|socket2) '
if found=$(printf '%s\n' "$tree" | grep -E "$banned"); then
  echo "purity: murmur-protocol must not depend on these crates:" >&2
  printf '%s\n' "$found" | sort -u >&2
  exit 1
fi
# rand without its OS-backed features: no thread_rng, no OsRng.
if cargo tree -p murmur-protocol -e features -i rand_core --locked 2>/dev/null | grep -qE '"(os_rng|getrandom)"'; then
  echo "purity: rand_core's OS randomness feature is enabled in murmur-protocol" >&2
  exit 1
fi
pattern='std::time::(Instant|SystemTime)|SystemTime::now|Instant::now|thread_rng|rand::rng\(\)|OsRng|from_entropy|from_os_rng|std::net|std::fs|tokio|std::thread'
if found=$(grep -rnE "$pattern" protocol/src); then
  echo "purity: murmur-protocol source uses a clock, OS randomness, threads or IO:" >&2
  printf '%s\n' "$found" >&2
  exit 1
fi
echo "purity: murmur-protocol is free of IO, clocks, OS randomness, tokio, libp2p and burn"

# The simulator reuses the trainer and the datasets (murmur-learn) and replaces the network and
# the clock: it links no networking stack.
sim_tree=$(cargo tree -p murmur-sim -e normal --prefix none --locked)
if found=$(printf '%s\n' "$sim_tree" | grep -E '^(tokio|libp2p[-a-z0-9]*|snow|murmur-node|murmur-link) '); then
  echo "purity: murmur-sim must not depend on these crates:" >&2
  printf '%s\n' "$found" | sort -u >&2
  exit 1
fi
echo "purity: murmur-sim links no tokio, libp2p, snow or murmur-node"
