#!/usr/bin/env bash
# A one-minute tour of valet keys: make a keyring, issue, inspect, attenuate, verify.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
valet=${VALET:-$here/target/release/valet}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$valet" key new-keyring --out "$work/keyring"
token=$("$valet" key issue --keyring "$work/keyring" --resource blob:photos/2024/ \
  --ops read,list --ttl 10m --subject alice --max-bytes 10MiB)
echo "issued (${#token} characters): $token"
"$valet" key inspect "$token"

shared=$("$valet" key attenuate "$token" --ttl 1m --ops read --resource blob:photos/2024/jan/)
echo "narrowed without the secret: $shared"

echo "read blob:photos/2024/jan/cat.jpg with the narrowed key:"
"$valet" key verify --keyring "$work/keyring" --op read --resource blob:photos/2024/jan/cat.jpg "$shared"

echo "list with the narrowed key (the caveat removed 'list'):"
if "$valet" key verify --keyring "$work/keyring" --op list --resource blob:photos/2024/jan/ "$shared"; then
  echo "unexpected grant" >&2
  exit 1
fi
echo "tour complete"
