#!/usr/bin/env bash
# The whole Burrow flow on loopback: an edge, a connector and a hello origin.
# Everything lives in a temporary directory and stops on Ctrl-C.
set -euo pipefail

demo=$(mktemp -d -t burrow-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$demo"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

wait_for_file() {
    for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done
    echo "demo: timed out waiting for $1" >&2; exit 1
}

export BURROW_HOME="$demo/connector"
edge_home="$demo/edge"

echo "==> burrow-edge init (zone example.test, dev CA)"
burrow-edge init --home "$edge_home" --zone example.test --public-ip 127.0.0.1 --dev-ca \
    --https-listen 127.0.0.1:0 --tunnel-listen 127.0.0.1:0 --dns-listen 127.0.0.1:0 >/dev/null
burrow-edge serve --home "$edge_home" 2>"$demo/edge.log" & pids+=($!)
wait_for_file "$edge_home/listen.json"
https=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["https"])' "$edge_home/listen.json")
port=${https##*:}

echo "==> hello origin on 127.0.0.1"
mkdir -p "$demo/site"
echo "Hello from the origin behind your Burrow tunnel!" >"$demo/site/index.html"
python3 - "$demo/site" "$demo/origin.port" <<'PY' 2>"$demo/origin.log" & pids+=($!)
import functools, http.server, os, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
with open(sys.argv[2] + ".tmp", "w") as out:
    out.write(str(server.server_address[1]))
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
server.serve_forever()
PY
wait_for_file "$demo/origin.port"

echo "==> account, login, tunnel, route"
token=$(burrow-edge account create demo --home "$edge_home" | tail -n 1)
burrow tunnel login "https://127.0.0.1:$port" --token "$token" --ca-file "$edge_home/ca.pem"
burrow tunnel create demo-tunnel >/dev/null
burrow tunnel route dns demo-tunnel app.example.test
cat >"$BURROW_HOME/config.yml" <<YML
tunnel: demo-tunnel
ingress:
  - hostname: app.example.test
    service: http://127.0.0.1:$(cat "$demo/origin.port")
  - service: http_status:404
YML

echo "==> burrow tunnel run demo-tunnel"
burrow tunnel run 2>"$demo/connector.log" & pids+=($!)
for _ in $(seq 200); do
    [ "$(grep -c 'tunnel.registered' "$demo/connector.log" || true)" -ge 4 ] && break
    sleep 0.05
done
grep 'tunnel.registered' "$demo/connector.log" | sed 's/^/    /'

cat <<MSG

Burrow is up: edge on 127.0.0.1:$port, connector with 4 connections, origin behind it.
Try it (from another terminal):

  curl --cacert $edge_home/ca.pem --resolve app.example.test:$port:127.0.0.1 https://app.example.test:$port/

Logs are in $demo. Press Ctrl-C to stop.
MSG
wait
