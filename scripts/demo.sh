#!/usr/bin/env bash
# `make demo`: the whole update system on embedded defaults, in well under a minute.
# A server on SQLite in a temp dir, the example fleet file, a few dozen simulated machines checking
# in over real Omaha HTTP, then the instances and activity tables and the dashboard's URL. On a
# terminal it keeps serving (and the machines keep checking in) until Ctrl-C; without one (CI,
# `make demo < /dev/null`) it stops by itself and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
STATE=$(mktemp -d /tmp/flotilla-demo.XXXXXX)
SERVER_PID=""
FLEET_PID=""
cleanup() {
    for pid in $FLEET_PID $SERVER_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$STATE"
}
trap cleanup EXIT
trap 'echo; echo "stopped"; exit 0' INT TERM

DB="sqlite:///$STATE/updates.db"
PORT=${FLOTILLA_DEMO_PORT:-$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL="http://127.0.0.1:$PORT"
ADMIN=${FLOTILLA_DEMO_ADMIN_TOKEN:-demo-admin-$(python -c 'import secrets; print(secrets.token_hex(6))')}
VIEWER=${FLOTILLA_DEMO_READ_TOKEN:-demo-viewer-$(python -c 'import secrets; print(secrets.token_hex(6))')}

echo "== 1. apply the fleet file examples/updates/fleet.yaml (SQLite in $STATE)"
flotilla updates apply -f examples/updates/fleet.yaml --db "$DB"

echo
echo "== 2. flotilla updates serve on $URL"
flotilla updates serve --db "$DB" --port "$PORT" --admin-token "$ADMIN" --read-token "$VIEWER" \
    --sample-interval 2 --log-level warning >"$STATE/server.log" 2>&1 &
SERVER_PID=$!
python - "$URL" "$SERVER_PID" <<'PY'
import os, sys, time, httpx
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        if httpx.get(url + "/healthz", timeout=2).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the server exited; see its log above")
    time.sleep(0.2)
sys.exit("the server did not answer /healthz within 60 s")
PY

echo
echo "== 3. 200 machines of the canary group through the node agent's simulator (time x600)"
if flotilla updates simulate --help >/dev/null 2>&1; then
    flotilla updates simulate --server "$URL/v1/update/" --instances 200 --track canary \
        --version 3760.2.0 --target 3815.2.0 --time-scale 600 --until-done --timeout 45 \
        || echo "   (the simulator did not finish; the rest of the demo goes on)"
else
    echo "   (this build has no 'flotilla updates simulate'; skipped)"
fi

echo
echo "== 4. 38 machines in four groups with different policies (python -m flotilla.updates.node.demo)"
python -m flotilla.updates.node.demo --server "$URL" --rounds 6 --interval 0.5 --state "$STATE/fleet.json"

echo
echo "== 5. flotilla updates instances (the 40 seen last)"
flotilla updates instances --db "$DB" --limit 40
echo
echo "== 6. flotilla updates activity"
flotilla updates activity --db "$DB" --limit 20

cat <<MSG

== 7. the dashboard
   $URL/
   admin token (may change things): $ADMIN
   read token (may only look):      $VIEWER
   What to look at: group "production" lets 4 machines a minute through (the rest wait OnHold),
   "experimental" is halted by its failure brake (Resume releases it), "half" updates half.
MSG

if [ -t 0 ] && [ -t 1 ]; then
    python -m flotilla.updates.node.demo --server "$URL" --forever --interval 3 --quiet \
        --state "$STATE/fleet.json" &
    FLEET_PID=$!
    echo "   The machines keep checking in every 3 s; Ctrl-C stops everything."
    wait "$SERVER_PID"
else
    echo "   (no terminal: stopping now; run 'make demo' in a terminal to keep it serving)"
fi
