#!/usr/bin/env bash
# The main job on the bundled example vault: load concept cards and evidence, build the
# index, ask which concepts to try on a few tasks (symbolic and hybrid), then verify.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
V="${1:-/tmp/vault-demo}"
# The demo deletes only a vault it made itself: one holding the marker it leaves. Any other
# non-empty path (DEMO=~ by mistake, a real vault) is refused, untouched.
mark=.vault-demo
if [ -L "$V" ] || { [ -e "$V" ] && [ ! -d "$V" ]; }; then
    printf 'demo: %s is not a directory the demo made; choose another (make demo DEMO=DIR)\n' "$V" >&2
    exit 1
fi
if [ -d "$V" ] && [ -n "$(ls -A "$V")" ]; then
    if [ -f "$V/$mark" ] && [ ! -L "$V/$mark" ]; then
        rm -rf "$V"
    else
        printf 'demo: %s is not empty and was not made by the demo (no %s in it); remove it yourself or choose another (make demo DEMO=DIR)\n' "$V" "$mark" >&2
        exit 1
    fi
fi
mkdir -p "$V"
export VAULT_DIR="$V"

# Bold command lines only on a terminal, and never when NO_COLOR is set (no-color.org).
if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain" >&2; "$@"; }

step vault init
printf 'made by examples/demo.sh: a rerun of the demo deletes this directory\n' > "$V/$mark"
step vault add "$here/cards.jsonl"
step vault evidence add "$here/evidence.jsonl"
step vault index build
step vault retrieve --mode symbolic --task "$here/tasks/rotate.json" -k 5
step vault retrieve --mode hybrid --task "$here/tasks/rotate.json" -k 5
step vault retrieve --mode hybrid --task "$here/tasks/fill.json" -k 5
step vault retrieve --mode hybrid --strategy weighted --task "$here/tasks/scale.json" -k 5
step vault retrieve --mode hybrid --query "$here/queries/same-dims.json" -k 5
step vault index status
step vault verify
step vault rollback --list
printf '\ndemo vault left in %s (try: VAULT_DIR=%s vault log)\n' "$V" "$V" >&2
