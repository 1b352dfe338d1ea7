#!/usr/bin/env bash
# Multi-host test of Mycel: discovery and inference across separate Linux network namespaces.
#
# Usage (as root, needs iproute2's `ip netns`):   sudo npm run test:multihost
#                                            or:   sudo bash scripts/multihost/run.sh
#
# What it does, all inside namespaces it creates itself (the host's own network is never touched):
#   mycel-mh-<pid>-br   a bridge, the "switch" of a private subnet 10.77.<x>.0/24
#   mycel-mh-<pid>-p1   provider 1 at 10.77.<x>.1 (the bootstrap node)
#   mycel-mh-<pid>-p2   provider 2 at 10.77.<x>.2, bootstrapping to provider 1
#   mycel-mh-<pid>-gw   the gateway at 10.77.<x>.3, bootstrapping to provider 1 only (it must discover
#                       provider 2 through the network); its HTTP API is on 127.0.0.1 inside that namespace
# Each host gets its own MYCEL_HOME with the tiny test model (same bytes, same hash) and a key from `init`.
# Checks: the gateway lists both providers; chat completions answer with text and a receipt; then the
# provider that served the last request is killed (SIGKILL) and further requests must still succeed,
# served by the other provider. Prints `N passed, M failed`; exit 0 only when M is 0.
# Exit 77 when it cannot run here (not root, no `ip netns`); it never passes without running.
# Everything it started is cleaned up on exit, failure, Ctrl-C or its own time limit (MYCEL_MH_BUDGET_S,
# default 170 s). MYCEL_MH_KEEP=1 keeps the temp dir (homes and logs) for inspection.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MYCEL="$ROOT/bin/mycel.js"
CLIENT="$ROOT/scripts/multihost/client.mjs"
BUDGET_S="${MYCEL_MH_BUDGET_S:-170}"
DISCOVERY_TIMEOUT_S=60
READY_TIMEOUT_S=60
START_TIME=$SECONDS

say() { printf '[multihost %3ds] %s\n' "$((SECONDS - START_TIME))" "$*"; }
skip() {
  echo "multihost: SKIPPED, cannot run: $*" >&2
  echo "0 passed, 1 failed (not run)"
  exit 77
}

# --- preconditions: no silent pass ---------------------------------------------------------------
[[ "$(id -u)" == 0 ]] || skip "needs root to create network namespaces (run it with sudo)"
command -v ip >/dev/null 2>&1 || skip "iproute2's \`ip\` command is not installed"
command -v node >/dev/null 2>&1 || skip "node is not on PATH"
command -v timeout >/dev/null 2>&1 || skip "coreutils' \`timeout\` is not installed"
PROBE_NS="mycel-mh-$$-probe"
if ! probe_error="$(ip netns add "$PROBE_NS" 2>&1)"; then
  skip "\`ip netns add\` failed: $probe_error (a container without CAP_SYS_ADMIN/CAP_NET_ADMIN?)"
fi
ip netns del "$PROBE_NS" 2>/dev/null

# --- state and cleanup ------------------------------------------------------------------------
PREFIX="mycel-mh-$$"
NS_BR="$PREFIX-br"
HOSTS=(p1 p2 gw)
declare -A NS IP PID HOME_OF LOG READY_LINE PREPARE
SUBNET_X=$(($$ % 250 + 1)) # private to our namespaces, so it cannot clash with the host's networks
for index in "${!HOSTS[@]}"; do
  host="${HOSTS[$index]}"
  NS[$host]="$PREFIX-$host"
  IP[$host]="10.77.$SUBNET_X.$((index + 1))"
done
CREATED_NS=()
TMP=""
WATCHDOG=""
PASSED=0
FAILED=0
FINISHED=0
CLEANED=0

pass() {
  PASSED=$((PASSED + 1))
  say "PASS $*"
}
fail() {
  FAILED=$((FAILED + 1))
  say "FAIL $*"
}

cleanup() {
  local status=$?
  [[ $CLEANED == 1 ]] && return
  CLEANED=1
  trap "" INT TERM # a second Ctrl-C must not cut the cleanup short
  [[ -n "$WATCHDOG" ]] && kill "$WATCHDOG" 2>/dev/null
  if [[ $FINISHED != 1 || $FAILED -gt 0 ]] && [[ -n "$TMP" ]]; then
    for host in "${HOSTS[@]}"; do
      [[ -f "${LOG[$host]:-}" ]] || continue
      echo "----- last lines of the $host log (${LOG[$host]}) -----"
      tail -n 25 "${LOG[$host]}"
    done
  fi
  # The processes we started: SIGTERM, a few seconds' grace, then SIGKILL.
  for pid in "${PREPARE[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
  local alive=()
  for host in "${HOSTS[@]}"; do
    [[ -n "${PID[$host]:-}" ]] && kill -0 "${PID[$host]}" 2>/dev/null && alive+=("${PID[$host]}")
  done
  if ((${#alive[@]})); then
    kill -TERM "${alive[@]}" 2>/dev/null
    for _ in $(seq 1 30); do
      local left=0
      for pid in "${alive[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
      ((left)) || break
      sleep 0.2
    done
    kill -KILL "${alive[@]}" 2>/dev/null
  fi
  # Anything else still inside our own namespaces (only we put processes there), then the namespaces:
  # deleting a namespace also deletes the veth ends and the bridge in it.
  for ns in "${CREATED_NS[@]}"; do
    local pids
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    [[ -n "${pids// /}" ]] && kill -KILL $pids 2>/dev/null
  done
  for ns in "${CREATED_NS[@]}"; do
    ip netns del "$ns" 2>/dev/null || echo "multihost: could not delete namespace $ns" >&2
  done
  if [[ -n "$TMP" ]]; then
    if [[ "${MYCEL_MH_KEEP:-0}" == 1 ]]; then echo "multihost: kept $TMP"; else rm -rf "$TMP"; fi
  fi
  # The summary is always the last line.
  if [[ $FINISHED != 1 ]]; then
    FAILED=$((FAILED + 1))
    echo "multihost: aborted before the end (exit status $status)"
  fi
  echo "$PASSED passed, $FAILED failed"
  if ((FAILED == 0)); then exit 0; fi
  ((status != 0)) && exit "$status"
  exit 1
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated (time limit of ${BUDGET_S} s, or a signal)"; exit 143' TERM

TMP="$(mktemp -d "${TMPDIR:-/tmp}/mycel-multihost.XXXXXX")"

# The whole run is bounded: past the budget, the watchdog sends SIGTERM and the EXIT trap cleans up.
# It also kills what runs in our namespaces, so that a long foreground command cannot delay the exit.
# Should this script have died without its trap (SIGKILL), the watchdog deletes the namespaces and the
# temp dir itself once the budget is over.
(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "$BUDGET_S" &
  sleeper=$!
  wait "$sleeper"
  read -r _ _ _ parent _ <"/proc/$BASHPID/stat"
  if [[ "$parent" == "$$" ]]; then
    echo "multihost: time limit of $BUDGET_S s reached" >&2
    kill -TERM $$ 2>/dev/null
  fi
  for ns in "$NS_BR" "${NS[@]}"; do
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    [[ -n "${pids// /}" ]] && kill -KILL $pids 2>/dev/null
    [[ "$parent" == "$$" ]] || ip netns del "$ns" 2>/dev/null
  done
  [[ "$parent" == "$$" ]] || rm -rf "$TMP"
) &
WATCHDOG=$!

# Children read stdin from this FIFO; only this script holds its write end (fd 9), so if the script dies
# even by SIGKILL, their stdin closes and MYCEL_EXIT_WITH_PARENT makes them exit: no orphaned nodes.
mkfifo "$TMP/parent.fifo"
exec 9<>"$TMP/parent.fifo"

# --- network: a bridge namespace and one veth pair per host ------------------------------------
add_ns() {
  ip netns add "$1" || return 1
  CREATED_NS+=("$1")
  ip -n "$1" link set lo up
}
setup_network() {
  add_ns "$NS_BR" || return 1
  ip -n "$NS_BR" link add br0 type bridge || return 1
  ip -n "$NS_BR" link set br0 up || return 1
  for host in "${HOSTS[@]}"; do
    add_ns "${NS[$host]}" || return 1
    # One end stays in the bridge namespace, the other becomes eth0 of the host's namespace.
    ip -n "$NS_BR" link add "v-$host" type veth peer name eth0 netns "${NS[$host]}" || return 1
    ip -n "$NS_BR" link set "v-$host" master br0 || return 1
    ip -n "$NS_BR" link set "v-$host" up || return 1
    ip -n "${NS[$host]}" addr add "${IP[$host]}/24" dev eth0 || return 1
    ip -n "${NS[$host]}" link set eth0 up || return 1
  done
}
say "namespaces ${PREFIX}-{br,p1,p2,gw}, subnet 10.77.$SUBNET_X.0/24"
if setup_network; then
  pass "network: 4 namespaces, bridge and veth pairs created"
else
  fail "network setup"
  FINISHED=1
  exit 1
fi

# Reachability over the bridge, with node (no ping needed): the gateway's namespace connects to a TCP
# listener in each provider's namespace.
tcp_probe() { # <from-ns> <to-ns> <to-ip>
  local port=7999
  ip netns exec "$2" timeout 10 node -e "
    const s = require('net').createServer((c) => { c.end(); s.close(); });
    s.listen($port, '$3', () => console.log('up'));" >"$TMP/probe.out" 2>&1 <&- 9>&- &
  local server=$!
  for _ in $(seq 1 50); do grep -q up "$TMP/probe.out" 2>/dev/null && break; sleep 0.1; done
  ip netns exec "$1" timeout 5 node -e "
    const c = require('net').connect($port, '$3', () => { c.end(); process.exit(0); });
    c.on('error', (e) => { console.error(e.message); process.exit(1); });" <&- 9>&-
  local status=$?
  kill "$server" 2>/dev/null
  wait "$server" 2>/dev/null
  return $status
}
reach_ok=1
for host in p1 p2; do
  tcp_probe "${NS[gw]}" "${NS[$host]}" "${IP[$host]}" || reach_ok=0
done
if ((reach_ok)); then pass "network: gw reaches p1 and p2 over TCP"; else fail "network: gw cannot reach a provider"; fi
if ip netns exec "${NS[gw]}" ip route get 8.8.8.8 >/dev/null 2>&1; then
  fail "network: the gw namespace has a route out (it should be isolated)"
fi

# --- homes, model, keys -----------------------------------------------------------------------
export MYCEL_PASSWORD="multihost-test"
# The tiny test model and a key in each host's own home, in parallel. Each runs in its own session
# (setsid execs, so the pid is the process group) so that cleanup can end it and its children at once.
for host in "${HOSTS[@]}"; do
  HOME_OF[$host]="$TMP/home-$host"
  LOG[$host]="$TMP/$host.log"
  mkdir -p "${HOME_OF[$host]}"
  MYCEL_HOME="${HOME_OF[$host]}" setsid bash -c \
    'timeout 60 node "$1" --home "$2" model make-test && timeout 60 node "$1" --home "$2" init --key "$3"' \
    _ "$MYCEL" "${HOME_OF[$host]}" "mh-$host" >"$TMP/prepare-$host.out" 2>&1 </dev/null 9>&- &
  PREPARE[$host]=$!
done
MODEL_HASH=""
homes_ok=1
for host in "${HOSTS[@]}"; do
  if ! wait "${PREPARE[$host]}"; then
    homes_ok=0
    say "preparing the home of $host failed:"
    cat "$TMP/prepare-$host.out"
  fi
  hash="$(sed -n 's/^sha256: *\([0-9a-f]\{64\}\).*/\1/p' "$TMP/prepare-$host.out")"
  if [[ -z "$hash" ]]; then
    homes_ok=0
  elif [[ -z "$MODEL_HASH" ]]; then
    MODEL_HASH="$hash"
  elif [[ "$hash" != "$MODEL_HASH" ]]; then
    homes_ok=0
    say "the model hash differs on $host: $hash vs $MODEL_HASH"
  fi
done
if ((homes_ok)); then
  pass "homes: test model ${MODEL_HASH:0:12}… (same hash in all 3 homes) and a key per host"
else
  fail "homes: making the test model or a key failed"
  FINISHED=1
  exit 1
fi

# --- processes ----------------------------------------------------------------------------------
start_role() { # <host> <args...>
  local host=$1
  shift
  MYCEL_HOME="${HOME_OF[$host]}" MYCEL_EXIT_WITH_PARENT=1 \
    ip netns exec "${NS[$host]}" node "$MYCEL" --home "${HOME_OF[$host]}" "$@" --key "mh-$host" \
    <"$TMP/parent.fifo" >"${LOG[$host]}" 2>&1 9>&- &
  PID[$host]=$! # `ip netns exec` execs the command: this is node's pid
}
wait_ready() { # <host>: sets READY_LINE[host] to the JSON after MYCEL_READY
  local host=$1 deadline=$((SECONDS + READY_TIMEOUT_S)) line
  while ((SECONDS < deadline)); do
    line="$(grep -m1 '^MYCEL_READY ' "${LOG[$host]}" 2>/dev/null)"
    if [[ -n "$line" ]]; then
      READY_LINE[$host]="${line#MYCEL_READY }"
      return 0
    fi
    kill -0 "${PID[$host]}" 2>/dev/null || {
      say "$host exited before it was ready"
      return 1
    }
    sleep 0.2
  done
  say "$host not ready after $READY_TIMEOUT_S s"
  return 1
}
json_field() { # <json> <js expression on v>
  node -e "const v = JSON.parse(process.argv[1]); const r = ($2); console.log(typeof r === 'string' ? r : JSON.stringify(r));" "$1" 9>&-
}
give_up() {
  fail "$1"
  FINISHED=1
  exit 1
}

say "starting provider 1 in ${NS[p1]}"
start_role p1 provider --model "$MODEL_HASH" --listen "/ip4/${IP[p1]}/tcp/4001"
wait_ready p1 || give_up "provider 1 did not start"
P1_MULTIADDR="$(json_field "${READY_LINE[p1]}" "v.multiaddrs.find((a) => a.startsWith('/ip4/${IP[p1]}/')) ?? ''")"
[[ -n "$P1_MULTIADDR" ]] || give_up "provider 1 announces no address on ${IP[p1]}: ${READY_LINE[p1]}"
say "provider 1 ready: $P1_MULTIADDR"

say "starting provider 2 in ${NS[p2]} (bootstrap: provider 1)"
start_role p2 provider --model "$MODEL_HASH" --listen "/ip4/${IP[p2]}/tcp/4001" --bootstrap "$P1_MULTIADDR"
say "starting the gateway in ${NS[gw]} (bootstrap: provider 1 only)"
start_role gw gateway --host 127.0.0.1 --port 0 --listen "/ip4/${IP[gw]}/tcp/0" --bootstrap "$P1_MULTIADDR"
wait_ready p2 || give_up "provider 2 did not start"
wait_ready gw || give_up "the gateway did not start"
GW_URL="$(json_field "${READY_LINE[gw]}" "v.url")"
say "provider 2 ready: $(json_field "${READY_LINE[p2]}" "v.multiaddrs.join(' ')")"
say "gateway ready: $GW_URL (inside ${NS[gw]})"
pass "processes: 2 providers and a gateway ready in their namespaces"

declare -A ADDRESS_OF HOST_OF_ADDRESS
for host in p1 p2; do
  ADDRESS_OF[$host]="$(json_field "${READY_LINE[$host]}" "v.address")"
  HOST_OF_ADDRESS[${ADDRESS_OF[$host],,}]=$host
  # Every address a provider announces must be one the others can dial: its namespace IP, not loopback.
  bad="$(json_field "${READY_LINE[$host]}" "v.multiaddrs.filter((a) => !a.startsWith('/ip4/${IP[$host]}/')).join(' ')")"
  if [[ -n "$bad" ]]; then
    fail "$host announces addresses other hosts cannot reach: $bad"
  fi
done

client() { ip netns exec "${NS[gw]}" node "$CLIENT" "$@" 9>&-; }

# --- discovery ------------------------------------------------------------------------------------
say "waiting (at most ${DISCOVERY_TIMEOUT_S} s) for the gateway to list 2 providers"
listed="$(client providers "$GW_URL" 2 "$DISCOVERY_TIMEOUT_S")"
discovery=$?
say "providers: $listed"
if ((discovery == 0)); then
  missing=""
  for host in p1 p2; do
    grep -qi "${ADDRESS_OF[$host]}" <<<"$listed" || missing+=" $host"
  done
  if [[ -z "$missing" ]]; then
    pass "discovery: the gateway lists both providers (provider 2 found through the network)"
  else
    give_up "discovery: the gateway lists 2 providers but not:$missing"
  fi
else
  give_up "discovery: the gateway did not list 2 providers within ${DISCOVERY_TIMEOUT_S} s"
fi

# --- inference ----------------------------------------------------------------------------------
declare -A SERVED=([p1]=0 [p2]=0)
LAST_HOST=""
chat() { # <label> <prompt> <seed> [expected host]; returns 0 when it passed
  local label=$1 prompt=$2 seed=$3 expected=${4:-} out address host
  out="$(client chat "$GW_URL" "$MODEL_HASH" "$prompt" "$seed")"
  local status=$?
  address="$(json_field "$out" "(v.providers ?? []).at(-1) ?? ''" 2>/dev/null)"
  host="${HOST_OF_ADDRESS[${address,,}]:-unknown}"
  say "$label: $out"
  if ((status != 0)); then
    fail "$label: $(json_field "$out" "v.reason" 2>/dev/null || echo "$out")"
    return 1
  fi
  SERVED[$host]=$((${SERVED[$host]:-0} + 1))
  LAST_HOST=$host
  if [[ -n "$expected" && "$host" != "$expected" ]]; then
    fail "$label: served by $host ($address), expected $expected"
    return 1
  fi
  pass "$label: answer $(json_field "$out" "JSON.stringify(v.content)") with $(json_field "$out" "v.receipts") receipt(s), served by $host"
}

for n in 1 2 3; do
  chat "chat $n" "Hello from the multihost test, request $n" "$n"
done
say "served before the kill: p1 ${SERVED[p1]}, p2 ${SERVED[p2]}"
if ((SERVED[p1] > 0 && SERVED[p2] > 0)); then
  say "routing spread the requests over both providers"
fi

# --- failover: kill the provider that served last, the other one must take over -----------------
case "$LAST_HOST" in
  p1) VICTIM=p1 SURVIVOR=p2 ;;
  p2) VICTIM=p2 SURVIVOR=p1 ;;
  *) give_up "failover: no request succeeded, so there is no provider to kill" ;;
esac
say "killing $VICTIM (SIGKILL, pid ${PID[$VICTIM]}), which served the last request"
kill -KILL "${PID[$VICTIM]}"
wait "${PID[$VICTIM]}" 2>/dev/null
PID[$VICTIM]=""
for n in 4 5; do
  chat "chat $n after killing $VICTIM" "Still there? request $n" "$n" "$SURVIVOR"
done
if ((SERVED[p1] > 0 && SERVED[p2] > 0)); then
  pass "both providers' addresses served at least one request (p1 ${SERVED[p1]}, p2 ${SERVED[p2]})"
else
  fail "only one provider ever served (p1 ${SERVED[p1]}, p2 ${SERVED[p2]})"
fi

FINISHED=1
say "runtime $((SECONDS - START_TIME)) s (cleanup follows)"
exit 0 # the EXIT trap cleans up and prints `N passed, M failed`, exiting non-zero if M > 0
