#!/usr/bin/env bash
# The docs as docs.rs builds them ([package.metadata.docs.rs]: every feature, --cfg docsrs on
# a nightly rustdoc; RUSTC_BOOTSTRAP lets the stable one stand in): they build without a
# warning, and every runtime module is there with the badge of the feature it needs.
set -euo pipefail
# What docs.rs reads from Cargo.toml: it must ask for every feature and --cfg docsrs.
args=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
m = json.load(sys.stdin)["packages"][0]["metadata"] or {}
d = m.get("docs", {}).get("rs", {})
if d.get("all-features") is not True or "docsrs" not in d.get("rustdoc-args", []):
    sys.exit("docsrs: Cargo.toml needs [package.metadata.docs.rs] all-features = true and rustdoc-args = [\"--cfg\", \"docsrs\"]")
print(" ".join(d["rustdoc-args"]))
')
RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="$args -Dwarnings" cargo doc --quiet --all-features --no-deps
doc=target/doc/tinymqtt
bad=0
badge() { # page feature
  if ! grep -q "Available on crate feature <code>$2</code> only\|Available on crate feature \`$2\` only" "$1"; then
    echo "docsrs: no '$2' feature badge in $1" >&2
    bad=1
  fi
}
for m in tokio:tokio smol:smol async_std:async-std blocking:blocking access:broker; do
  page="$doc/runtimes/${m%%:*}/index.html"
  if [ ! -f "$page" ]; then
    echo "docsrs: $page is missing" >&2
    bad=1
    continue
  fi
  badge "$doc/runtimes/index.html" "${m##*:}"
done
badge "$doc/runtimes/tokio/index.html" broker
[ "$bad" = 0 ] && echo "docsrs: every runtime module is rendered with its feature badge"
exit "$bad"
