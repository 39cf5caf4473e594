#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (the reference RFC 6455 conformance suite),
# sections 1 to 10 and, for permessage-deflate (RFC 7692), 12 and 13, against this crate's
# own server on /echo (default `--ws-deflate no-context`), once per server model, and fails
# unless every case is OK or INFORMATIONAL for both behaviour and close.
#
#   scripts/autobahn.sh [MODEL ...]      models: threads, epoll (default: both)
#   AUTOBAHN_SECTIONS="12 13" scripts/autobahn.sh epoll     only these sections
#   AUTOBAHN_CASES="12.*.[1-8]$ 13.*.[1-8]$" scripts/autobahn.sh epoll   only these cases
#   AUTOBAHN_CLIENTS=2 AUTOBAHN_CASES="12.1.* 12.2.* 13.1.*" scripts/autobahn.sh epoll
#       the patterns dealt round-robin to 2 suite clients that run at once against one server
#
# The suite's client runs one case at a time and sends each message after the last one's echo,
# so a run is bound by the client's single core (four fifths of the CPU in sections 12-13, which
# compress thousands of messages of up to 128 KiB). Several clients, each with its share of the
# patterns, use the other cores; the server meanwhile serves them all, as it would anyway.
# Leave sections 1-10 to one client: some of their cases (6.4, 9) judge how fast the server
# answers, and a second client on the same cores would only add noise to that.
#
# Reports land in $CARGO_TARGET_DIR (or target)/autobahn/<model>/index.html, or
# .../<model>/client-K/index.html with several clients. Set-up, about a minute the first time:
# wstest 0.8.2 needs Python 2.7. A pyenv 2.7 is used when present; otherwise Debian 11's
# python2.7 package is installed beside the system (Debian 12 dropped it).
set -euo pipefail
cd "$(dirname "$0")/.."
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(threads epoll)
sections=${AUTOBAHN_SECTIONS:-1 2 3 4 5 6 7 8 9 10 12 13}
# AUTOBAHN_CASES, when set, replaces the sections with the suite's own case patterns: it
# turns `.` into `\.` and `*` into `.*` and matches the rest as a regular expression from the
# start of the case id, so "12.*.[1-8]$" is cases 12.1.1-12.5.8 (every payload type, messages
# up to 32 KiB) and not 12.1.10.
patterns=${AUTOBAHN_CASES:-$(printf '%s.* ' $sections)}
clients=${AUTOBAHN_CLIENTS:-1}
sections=${AUTOBAHN_CASES:-$sections}
[ "$(echo $sections | wc -w)" -le 12 ] || sections="$(echo $sections | wc -w) case patterns"

# cases_for K: the JSON list of the patterns dealt to client K of $clients.
cases_for() {
  local k=$1 i=0 list="" pattern
  set -f # the patterns go to the suite as they are, not to the shell's globbing
  for pattern in $patterns; do
    [ $((i % clients)) -eq "$k" ] && list="$list\"$pattern\", "
    i=$((i + 1))
  done
  set +f
  echo "[${list%, }]"
}

find_python2() {
  for candidate in python2.7 "$HOME"/.pyenv/versions/2.7*/bin/python2.7; do
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
      command -v "$candidate" || echo "$candidate"
      return 0
    fi
  done
  return 1
}

if ! python2=$(find_python2); then
  echo "autobahn: installing python2.7 from Debian 11 (bullseye)"
  if [ ! -f /etc/apt/sources.list.d/bullseye.sources ]; then
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$uri" ] || { echo "autobahn: no Debian mirror found in the apt sources" >&2; exit 2; }
    printf 'Types: deb\nURIs: %s\nSuites: bullseye\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" >/etc/apt/sources.list.d/bullseye.sources
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bullseye python2.7 python2.7-dev >/dev/null
  python2=$(find_python2)
fi

# wstest and its pinned dependencies, in a user site of their own.
export PYTHONUSERBASE="$HOME/.cache/realtime-autobahn"
wstest="$PYTHONUSERBASE/bin/wstest"
if [ ! -x "$wstest" ]; then
  echo "autobahn: installing autobahntestsuite 0.8.2 for $python2"
  if ! "$python2" -m pip --version >/dev/null 2>&1; then
    wheels=$(mktemp -d)
    python3 -m pip download -q --no-deps --python-version 2.7 --only-binary=:all: \
      pip==20.3.4 setuptools==44.1.1 wheel==0.37.1 -d "$wheels"
    "$python2" "$wheels"/pip-20.3.4-py2.py3-none-any.whl/pip install -q --user --no-index \
      --find-links "$wheels" pip setuptools wheel
  fi
  "$python2" -m pip install -q --user --disable-pip-version-check autobahntestsuite==0.8.2 2>/dev/null
fi

cargo build --release --quiet
failed=0
for model in "${models[@]}"; do
  out="${CARGO_TARGET_DIR:-$PWD/target}/autobahn/$model"
  rm -rf "$out" && mkdir -p "$out"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # Long keepalive: the suite counts every frame, and a server ping would be an extra one.
  "${CARGO_TARGET_DIR:-target}"/release/realtime serve --addr "127.0.0.1:$port" --model "$model" --keepalive 3600 \
    2>"$out/server.log" &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
  done
  echo "autobahn: model $model, sections $sections, $clients client(s)"
  reports=() client_pids=()
  for k in $(seq 0 $((clients - 1))); do
    report="$out"
    [ "$clients" -eq 1 ] || report="$out/client-$k"
    mkdir -p "$report"
    reports+=("$report/index.json")
    work=$(mktemp -d)
    cat >"$work/fuzzingclient.json" <<JSON
{"outdir": "$report", "servers": [{"agent": "realtime-$model", "url": "ws://127.0.0.1:$port/echo"}],
 "cases": $(cases_for "$k"),
 "exclude-cases": [], "exclude-agent-cases": {}}
JSON
    # Where the time goes: `times` gives the client's CPU (the subshell's children), /proc
    # the server's below (fields 14 and 15: user and system ticks).
    (cd "$work" && timeout 2400 "$wstest" -m fuzzingclient -s fuzzingclient.json >"$report/wstest.log" 2>&1
      times >"$report/client-cpu.txt") &
    client_pids+=($!)
  done
  # A client that crashed leaves no report, which the check below says; wait on for the others.
  wait "${client_pids[@]}" || true
  server_ticks=$(awk '{print $14 + $15}' "/proc/$server/stat" 2>/dev/null || echo 0)
  echo "autobahn $model: CPU: server $(awk -v t="$server_ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}') s," \
    "client (user, system) $(for r in "${reports[@]}"; do tail -1 "${r%index.json}client-cpu.txt" 2>/dev/null; done | paste -sd ';')"
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  python3 - "$model" "${reports[@]}" <<'PY' || failed=1
import json, sys
model, paths = sys.argv[1], sys.argv[2:]
cases = {}
for path in paths:
    try:
        cases.update(next(iter(json.load(open(path)).values())))
    except (OSError, ValueError, StopIteration):
        print(f"autobahn {model}: no report (see {path.rsplit('/', 1)[0]}/wstest.log)")
        sys.exit(1)
good = {"OK", "INFORMATIONAL"}
bad = sorted((k for k, v in cases.items() if v["behavior"] not in good or v["behaviorClose"] not in good),
             key=lambda k: [int(p) for p in k.split(".")])
for k in bad:
    print(f"  case {k}: behavior {cases[k]['behavior']}, close {cases[k]['behaviorClose']}")
print(f"autobahn {model}: {len(cases) - len(bad)} passed, {len(bad)} failed")
sys.exit(1 if bad or not cases else 0)
PY
done
exit $failed
