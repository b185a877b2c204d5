# Shared helpers for scripts/test and scripts/demo. Sourced, not run.
# Everything installed here goes under .local/ (git-ignored), so a fresh
# clone sets itself up and nothing leaks onto the machine.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
LOGS="$LOCAL/logs"
mkdir -p "$LOGS"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# ensure_venv NAME REQUIREMENTS... : a virtualenv under .local/NAME with the
# pinned requirements; reinstalled only when the requirement files change.
ensure_venv() {
  local name="$1"; shift
  local venv="$LOCAL/$name"
  local stamp="$venv/.requirements.sha"
  local want
  want="$(cat "$@" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  say "setting up Python virtualenv .local/$name ($(basename -a "$@" | tr '\n' ' '))"
  command -v python3 >/dev/null || die "python3 is required (3.9+)"
  python3 -m venv "$venv" || die "could not create a virtualenv: install python3-venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >"$LOGS/pip-$name.log" 2>&1 || true
  local args=()
  for f in "$@"; do args+=(-r "$f"); done
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${args[@]}" >>"$LOGS/pip-$name.log" 2>&1 \
    || { tail -20 "$LOGS/pip-$name.log" >&2; die "pip install failed for .local/$name (log: .local/logs/pip-$name.log)"; }
  echo "$want" >"$stamp"
}

# wait_http URL SECONDS NAME PID : poll until URL answers, or fail naming NAME.
wait_http() {
  local url="$1" secs="$2" name="$3" pid="${4:-}"
  local deadline=$((SECONDS + secs))
  until curl -s -o /dev/null "$url"; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      die "$name exited during start-up (see its log in .local/logs/)"
    fi
    ((SECONDS < deadline)) || die "$name did not answer at $url within ${secs}s (see .local/logs/)"
    sleep 0.2
  done
}

PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] || continue
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] || continue
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

# start_moto : moto server on a free loopback port; exports MOTO_ENDPOINT.
# moto binds port 0 itself and writes the port it got: choosing a free port
# here and handing it over would race with every other process.
start_moto() {
  ensure_venv venv-moto "$ROOT/tools/requirements-moto.txt"
  local port_file="$LOGS/moto.port.$$"
  rm -f "$port_file"
  setsid "$LOCAL/venv-moto/bin/python" "$ROOT/tools/moto_server.py" -H 127.0.0.1 -p 0 --port-file "$port_file" \
    >"$LOGS/moto-$$.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local deadline=$((SECONDS + 30))
  until [[ -s "$port_file" ]]; do
    kill -0 "$pid" 2>/dev/null || die "moto exited during start-up (see .local/logs/moto-$$.log)"
    ((SECONDS < deadline)) || die "moto did not start within 30s (see .local/logs/moto-$$.log)"
    sleep 0.1
  done
  local port
  port="$(cat "$port_file")"
  rm -f "$port_file"
  wait_http "http://127.0.0.1:$port/moto-api/" 30 "moto server" "$pid"
  export MOTO_ENDPOINT="http://127.0.0.1:$port"
  say "moto server on $MOTO_ENDPOINT (pid $pid)"
}

# Fake credentials and a Region for everything that talks to moto.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-2}"
export AWS_REGION="${AWS_REGION:-us-east-2}"
