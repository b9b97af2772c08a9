#!/usr/bin/env bash
# The sans-IO core may depend on bytes and thiserror (with thiserror's macro crates) only.
set -euo pipefail
allowed="tinymqtt bytes thiserror thiserror-impl proc-macro2 quote syn unicode-ident"
found=$(cargo tree -e normal --no-default-features --prefix none --format '{p}' \
  | awk '{print $1}' | sort -u)
bad=0
for crate in $found; do
  if ! grep -qw -- "$crate" <<<"$allowed"; then
    echo "core-deps: '$crate' is not allowed in the core (cargo tree -e normal --no-default-features)" >&2
    bad=1
  fi
done
[ "$bad" = 0 ] && echo "core-deps: ok ($(echo $found | tr '\n' ' '))"
exit "$bad"
