#!/usr/bin/env bash
# The minimum supported Rust version (Cargo.toml's rust-version) holds as far as it can be
# checked with the one stable toolchain installed here (rustup cannot fetch another):
# - no dependency built for a user (every feature, dev-dependencies aside) declares a newer
#   rust-version than ours;
# - clippy's incompatible_msrv lint (part of `make lint`, which reads rust-version) refuses
#   standard library items stabilised after it.
# Language features newer than the MSRV are not caught: that needs the old toolchain.
# Cargo.lock keeps `time` (under x509-parser, with `tls`) at 0.3.45: later ones need Rust 1.88.
# It keeps idna_adapter (under async-nats's url, with `cluster`) at 1.2.0: later ones need Rust 1.86+.
set -euo pipefail
cargo metadata --format-version 1 --all-features --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" \
  | python3 -c '
import json, sys
m = json.load(sys.stdin)
pkgs = {p["id"]: p for p in m["packages"]}
root = m["resolve"]["root"]
ours = pkgs[root]["rust_version"]
def v(s): return (tuple(int(x) for x in (s or "0").split(".")) + (0, 0, 0))[:3]
# what a user builds: the normal dependencies, transitively
nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
seen, todo = set(), [root]
while todo:
    n = nodes[todo.pop()]
    for d in n["deps"]:
        if any(k["kind"] in (None, "build") for k in d["dep_kinds"]) and d["pkg"] not in seen:
            seen.add(d["pkg"]); todo.append(d["pkg"])
bad = [(pkgs[p]["name"], pkgs[p]["rust_version"]) for p in seen if v(pkgs[p]["rust_version"]) > v(ours)]
for name, rv in sorted(bad):
    print(f"msrv: {name} needs Rust {rv}, above our rust-version {ours}", file=sys.stderr)
if bad: sys.exit(1)
print(f"msrv: {len(seen)} dependencies need at most Rust {ours}")
'
