#!/usr/bin/env bash
# Doc comments (`///`, `//!`) in the library stay within 100 columns, like the code around
# them (rustfmt wraps code, not comments). Table rows cannot be wrapped and are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
long=$(grep -rnE '^\s*//[/!]' --include='*.rs' src runtimes \
  | awk '{ line = $0; sub(/^[^:]*:[^:]*:/, "", line)
           if (length(line) > 100 && line !~ /^[ \t]*\/\/[\/!] *\|/) print $0 }')
if [ -n "$long" ]; then
  echo "doc-width: doc comment lines over 100 columns:" >&2
  echo "$long" >&2
  exit 1
fi
echo "doc-width: every doc comment line is within 100 columns"
