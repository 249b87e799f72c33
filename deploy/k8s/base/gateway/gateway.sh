#!/bin/sh
# The gateway's process, in its pod (deploy/k8s/base/gateway.yaml) and in `make cluster-test`:
# HAProxy in master-worker mode on the rendered haproxy.cfg, reloaded without dropping a
# connection whenever the tokens file changes (a token rotation: docs/deploy.md).
#
# Environment:
#   CHARRNN_GATEWAY_CONFIG  the rendered haproxy.cfg
#   CHARRNN_GATEWAY_TOKENS  the tokens file: one client token per line (the current one and,
#                           during a rotation, the next); in Kubernetes a Secret's key, whose
#                           mounted file the kubelet updates in place
#   CHARRNN_GATEWAY_RUN     a writable folder (the admin socket, the pid file)
#   CHARRNN_GATEWAY_POLL    seconds between two looks at the tokens file (default 5)
#   HAPROXY                 the haproxy binary (default: haproxy on PATH)
# SIGTERM/SIGINT stop HAProxy softly: it stops accepting, finishes what it holds, then exits.
set -eu

: "${CHARRNN_GATEWAY_CONFIG:?the rendered haproxy.cfg}"
: "${CHARRNN_GATEWAY_TOKENS:?the tokens file}"
: "${CHARRNN_GATEWAY_RUN:?a writable folder}"
poll="${CHARRNN_GATEWAY_POLL:-5}"
haproxy="${HAPROXY:-haproxy}"
export CHARRNN_GATEWAY_TOKENS CHARRNN_GATEWAY_RUN

# A tokens file is usable when it has at least one token and every line is one token of 24 to
# 512 URL-safe characters: anything else (an empty file, a stray space, a "Bearer " prefix) is
# refused rather than loaded, so a bad rotation step keeps the tokens that work.
tokens_ok() {
  [ -s "$CHARRNN_GATEWAY_TOKENS" ] || return 1
  ! grep -Evq '^[A-Za-z0-9._~+/=-]{24,512}$' "$CHARRNN_GATEWAY_TOKENS"
}
fingerprint() { cksum < "$CHARRNN_GATEWAY_TOKENS" 2>/dev/null || echo missing; }

if ! tokens_ok; then
  echo "gateway: $CHARRNN_GATEWAY_TOKENS must hold one token per line (24 to 512 characters of A-Z a-z 0-9 . _ ~ + / = -)" >&2
  exit 2
fi
"$haproxy" -c -q -f "$CHARRNN_GATEWAY_CONFIG"
"$haproxy" -W -db -f "$CHARRNN_GATEWAY_CONFIG" -p "$CHARRNN_GATEWAY_RUN/haproxy.pid" &
master=$!
trap 'kill -USR1 "$master" 2>/dev/null || true' TERM INT

last=$(fingerprint)
while kill -0 "$master" 2>/dev/null; do
  sleep "$poll" &
  wait $! || true
  now=$(fingerprint)
  if [ "$now" != "$last" ]; then
    if tokens_ok; then
      last=$now
      kill -USR2 "$master"  # the master re-reads the file; old workers finish their requests
      echo "gateway: tokens file changed: reloaded" >&2
    else
      echo "gateway: tokens file changed but is not usable: kept the previous tokens" >&2
    fi
  fi
done
status=0
wait "$master" || status=$?
exit "$status"
