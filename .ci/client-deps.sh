#!/usr/bin/env bash
# A runtime feature alone gives a client: it must not pull in the broker's crates (the hashing
# crates of the access files, the redb store, the settings file's TOML parser), and its
# dependency list may not grow past the ceiling below without a deliberate edit here
# (cargo tree -e normal, crates incl. tinymqtt;
# http, with itoa, parses the endpoint URLs of every client).
set -euo pipefail
broker_only="redb pbkdf2 sha2 base64 subtle getrandom hmac digest toml toml_parser serde serde_spanned prometheus httparse"
declare -A ceiling=([tokio]=23 [smol]=42 [async-std]=42 [blocking]=18)
bad=0
for rt in tokio smol async-std blocking; do
  found=$(cargo tree -e normal --no-default-features --features "$rt" --prefix none --format '{p}' \
    | awk '{print $1}' | sort -u)
  for crate in $found; do
    if grep -qw -- "$crate" <<<"$broker_only"; then
      echo "client-deps: '$crate' is in the $rt client build (it belongs behind the broker/persistence features)" >&2
      bad=1
    fi
  done
  n=$(wc -w <<<"$found")
  if (( n > ceiling[$rt] )); then
    echo "client-deps: the $rt client build has $n crates, over its ceiling of ${ceiling[$rt]}:" >&2
    echo "  $(echo $found)" >&2
    bad=1
  else
    echo "client-deps: $rt client: $n crates (ceiling ${ceiling[$rt]})"
  fi
done
exit "$bad"
