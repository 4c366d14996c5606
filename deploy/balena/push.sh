#!/usr/bin/env bash
# Push the committed tree to a balena fleet: balena push wants docker-compose.yml at the root of
# what it sends, and build contexts inside it, so the repository is staged with ours at its root.
# Usage: deploy/balena/push.sh <fleet> [more balena push flags]
set -euo pipefail
fleet="${1:?usage: deploy/balena/push.sh <fleet> [balena push flags]}"
shift
root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
git -C "$root" archive --format=tar HEAD | tar -x -C "$stage"
cp "$root/deploy/balena/docker-compose.yml" "$root/deploy/balena/balena.yml" "$stage/"
balena push "$fleet" --source "$stage" "$@"
