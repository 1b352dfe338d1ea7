#!/usr/bin/env bash
# Multi-host test of Mycel: discovery, inference, relays and NAT traversal across separate Linux network
# namespaces, with real `mycel` processes.
#
# Usage (as root, needs iproute2's `ip netns` and iptables):   sudo npm run test:multihost
#                                                         or:   sudo bash scripts/multihost/run.sh
#
# Everything runs inside namespaces it creates itself (the host's own network is never touched). Two parts:
#
# 1. A flat private LAN (10.77.<x>.0/24), every node can dial every other:
#      mycel-mh-<pid>-br    a bridge, the "switch"
#      mycel-mh-<pid>-p1    provider 1 at 10.77.<x>.1 (the bootstrap node)
#      mycel-mh-<pid>-p2    provider 2 at 10.77.<x>.2, bootstrapping to provider 1
#      mycel-mh-<pid>-gw    the gateway at 10.77.<x>.3, bootstrapping to provider 1 only (it must discover
#                           provider 2 through the network); its HTTP API is on 127.0.0.1 in its namespace
#    Checks: the gateway lists both providers; chat completions answer with text and a receipt; the provider
#    that served last is killed (SIGKILL) and further requests are served by the other one.
#
# 2. The internet and three homes behind NAT:
#
#      "internet" bridge mycel-mh-<pid>-net, 11.77.<x>.0/24 (public-looking addresses: libp2p treats RFC 1918,
#      CGNAT and the documentation ranges as private, and AutoNAT/DCUtR only use public ones; nothing routes
#      out of these namespaces, so they never reach the real owner of 11/8)
#        |-- relay   11.77.<x>.1   `mycel relay --announce <its address>` with a small --relay-data-limit
#        |-- pub     11.77.<x>.3   gateway `pgw`, public (started last)
#        |-- r1      11.77.<x>.11  NAT router of home 1 --- h1 192.168.1.2  provider, listens on its LAN address
#        |-- r2      11.77.<x>.12  NAT router of home 2 --- h2 192.168.2.2  provider with `--listen none`
#        '-- r3      11.77.<x>.13  NAT router of home 3 --- h3 192.168.3.2  gateway `ngw`
#
#    Each router: ip_forward, `iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE`, FORWARD policy DROP
#    except LAN -> internet and the replies (conntrack ESTABLISHED,RELATED); the home host's default route
#    goes via its router. Every node bootstraps to the relay only. Checks: MASQUERADE works (the relay sees
#    the router's address) and the internet cannot open a connection into a home; the providers at home
#    reserve relay slots and the gateway behind NAT lists them and is served through the relay
#    (`connection: "relayed"` in /mycel/v1/providers). Between two NATed peers js-libp2p cannot hole-punch
#    over TCP: a TCP dial cannot reuse the listener's port, so identify ignores observed TCP addresses
#    (js-libp2p issue #2620) and neither side has a public address to send in DCUtR's CONNECT; the test
#    asserts that this connection stays relayed and keeps serving. A stream longer than the relay's data
#    limit must carry on past the cut (the gateway resumes it on the same provider over a new relayed
#    connection, or fails over) and lose no token. Killing the provider that served last fails over to the
#    other home provider. Then `pgw`, a gateway on a public address
#    (given with --announce, as an operator with a forwarded port would: AutoNAT v2 wants 4 dial-backs from
#    different /8 networks, which these few namespaces cannot offer), is served by the surviving provider: their connection must end up direct (the
#    provider behind NAT dials the public gateway: DCUtR's upgrade of the relayed connection, logged
#    `connection upgraded to direct`), and the long stream's text must equal the same greedy request over
#    that direct connection.
#
# Each node gets its own MYCEL_HOME with the tiny test model (same bytes, same hash) and a key from `init`.
# Prints `N passed, M failed`; exit 0 only when M is 0. Exit 77 when it cannot run here (not root, no
# `ip netns`, no iptables); it never passes without running. Everything it started is cleaned up on exit,
# failure, Ctrl-C or its own time limit (MYCEL_MH_BUDGET_S, default 280 s). MYCEL_MH_KEEP=1 keeps the temp
# dir (homes and logs) for inspection. Runs dist/: build first (`npm run build`; `npm test` does it).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MYCEL="$ROOT/bin/mycel.js"
CLIENT="$ROOT/scripts/multihost/client.mjs"
BUDGET_S="${MYCEL_MH_BUDGET_S:-280}"
DISCOVERY_TIMEOUT_S=60
READY_TIMEOUT_S=60
# The relay's cap on the bytes of one relayed connection (both directions together), and an answer that
# needs more than that on its own: the tiny model's byte-level tokens cost several wire bytes each. Large enough for a
# short chat and a new relayed connection's own traffic (identify both ways): at 16 KiB, a 16-token chat on a fresh
# connection was now and then cut between its last token and its receipt.
RELAY_DATA_LIMIT=24576
LONG_MAX_TOKENS=1200
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
[[ -f "$ROOT/dist/cli/index.js" ]] || skip "mycel is not built (run \`npm run build\` first)"
PROBE_NS="mycel-mh-$$-probe"
if ! probe_error="$(ip netns add "$PROBE_NS" 2>&1)"; then
  skip "\`ip netns add\` failed: $probe_error (a container without CAP_SYS_ADMIN/CAP_NET_ADMIN?)"
fi
# iptables inside a namespace: the nf_tables backend (Debian's default) where the kernel has it, else the
# legacy one. The same binary must be used for every rule, so the first that can make a NAT rule wins.
IPT=""
for candidate in iptables iptables-nft iptables-legacy; do
  command -v "$candidate" >/dev/null 2>&1 || continue
  if ip netns exec "$PROBE_NS" "$candidate" -t nat -A POSTROUTING -o lo -j MASQUERADE 2>/dev/null; then
    IPT=$candidate
    break
  fi
done
ip netns del "$PROBE_NS" 2>/dev/null
[[ -n "$IPT" ]] || skip "no iptables that can add a NAT rule in a namespace (apt-get install iptables)"

# --- state and cleanup ------------------------------------------------------------------------
PREFIX="mycel-mh-$$"
SUBNET_X=$(($$ % 250 + 1)) # private to our namespaces, so it cannot clash with the host's networks
LAN="10.77.$SUBNET_X"
NET="11.77.$SUBNET_X"
NODES=(p1 p2 gw relay h1 h2 ngw pgw) # every mycel process, by name
declare -A NS IP PID HOME_OF LOG READY_LINE PREPARE
NS=([p1]="$PREFIX-p1" [p2]="$PREFIX-p2" [gw]="$PREFIX-gw" [relay]="$PREFIX-relay"
  [h1]="$PREFIX-h1" [h2]="$PREFIX-h2" [ngw]="$PREFIX-h3" [pgw]="$PREFIX-pub")
IP=([p1]="$LAN.1" [p2]="$LAN.2" [gw]="$LAN.3" [relay]="$NET.1"
  [h1]="192.168.1.2" [h2]="192.168.2.2" [ngw]="192.168.3.2" [pgw]="$NET.3")
declare -A ROUTER_IP=([1]="$NET.11" [2]="$NET.12" [3]="$NET.13")
ALL_NS=("$PREFIX-br" "$PREFIX-p1" "$PREFIX-p2" "$PREFIX-gw" "$PREFIX-net" "$PREFIX-relay" "$PREFIX-pub"
  "$PREFIX-r1" "$PREFIX-r2" "$PREFIX-r3" "$PREFIX-h1" "$PREFIX-h2" "$PREFIX-h3")
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
    for host in "${NODES[@]}"; do
      [[ -f "${LOG[$host]:-}" ]] || continue
      echo "----- last lines of the $host log (${LOG[$host]}) -----"
      tail -n 25 "${LOG[$host]}"
    done
  fi
  # The processes we started: SIGTERM, a few seconds' grace, then SIGKILL.
  for pid in "${PREPARE[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
  local alive=()
  for host in "${NODES[@]}"; do
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
  # deleting a namespace also deletes the veth ends, the bridges and the iptables rules in it.
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
  for ns in "${ALL_NS[@]}"; do
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

# --- network ------------------------------------------------------------------------------------
add_ns() {
  ip netns add "$1" || return 1
  CREATED_NS+=("$1")
  ip -n "$1" link set lo up
}
# A namespace holding a bridge, the "switch" of a subnet.
add_bridge() { # <ns>
  add_ns "$1" && ip -n "$1" link add br0 type bridge && ip -n "$1" link set br0 up
}
# A veth pair from a bridge to a host: one end stays in the bridge namespace, the other becomes <ifname>.
plug() { # <bridge-ns> <port name> <host-ns> <ifname> <address/len>
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3" || return 1
  ip -n "$1" link set "$2" master br0 && ip -n "$1" link set "$2" up &&
    ip -n "$3" addr add "$5" dev "$4" && ip -n "$3" link set "$4" up
}
# Home <n>: router r<n> on the internet bridge, a point-to-point LAN 192.168.<n>.0/24 to host h<n>.
nat_home() { # <n>
  local n=$1 router="$PREFIX-r$1" home="$PREFIX-h$1"
  add_ns "$router" && add_ns "$home" || return 1
  plug "$PREFIX-net" "v-r$n" "$router" eth0 "${ROUTER_IP[$n]}/24" || return 1
  ip -n "$router" link add lan0 type veth peer name eth0 netns "$home" || return 1
  ip -n "$router" addr add "192.168.$n.1/24" dev lan0 && ip -n "$router" link set lan0 up || return 1
  ip -n "$home" addr add "192.168.$n.2/24" dev eth0 && ip -n "$home" link set eth0 up || return 1
  ip -n "$home" route add default via "192.168.$n.1" || return 1
  local nat=(ip netns exec "$router")
  "${nat[@]}" sysctl -qw net.ipv4.ip_forward=1 || return 1
  "${nat[@]}" "$IPT" -t nat -A POSTROUTING -o eth0 -j MASQUERADE || return 1
  "${nat[@]}" "$IPT" -P FORWARD DROP || return 1
  "${nat[@]}" "$IPT" -A FORWARD -i lan0 -o eth0 -j ACCEPT || return 1
  "${nat[@]}" "$IPT" -A FORWARD -i eth0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
}
setup_network() {
  add_bridge "$PREFIX-br" || return 1
  for host in p1 p2 gw; do
    add_ns "${NS[$host]}" && plug "$PREFIX-br" "v-$host" "${NS[$host]}" eth0 "${IP[$host]}/24" || return 1
  done
  add_bridge "$PREFIX-net" || return 1
  for host in relay pgw; do
    add_ns "${NS[$host]}" && plug "$PREFIX-net" "v-$host" "${NS[$host]}" eth0 "${IP[$host]}/24" || return 1
  done
  nat_home 1 && nat_home 2 && nat_home 3
}
say "namespaces ${PREFIX}-*: LAN $LAN.0/24; internet $NET.0/24 with a relay and 3 NAT routers ($IPT)"
if setup_network; then
  pass "network: ${#CREATED_NS[@]} namespaces, 2 bridges, veth pairs, 3 NAT routers created"
else
  fail "network setup"
  FINISHED=1
  exit 1
fi

# TCP over the namespaces, with node (no ping or netcat needed): a one-shot listener in <listen-ns> prints
# the peer address it sees; the connecting side prints "connected" or the error. Prints the listener's view
# ("from <address>") and returns 0 when the connection was made.
tcp_probe() { # <from-ns> <listen-ns> <listen-ip> <connect-ip> <port>
  local out="$TMP/probe-$RANDOM.out"
  ip netns exec "$2" timeout 10 node -e "
    const s = require('net').createServer((c) => { console.log('from ' + c.remoteAddress); c.end(); s.close(); });
    s.listen($5, '$3', () => console.log('up'));" >"$out" 2>&1 <&- 9>&- &
  local server=$!
  for _ in $(seq 1 50); do grep -q up "$out" 2>/dev/null && break; sleep 0.1; done
  ip netns exec "$1" timeout 5 node -e "
    const c = require('net').connect($5, '$4', () => { c.end(); process.exit(0); });
    c.setTimeout(3000, () => { console.error('timed out'); process.exit(1); });
    c.on('error', (e) => { console.error(e.code ?? e.message); process.exit(1); });" >/dev/null 2>&1 <&- 9>&-
  local status=$?
  for _ in $(seq 1 20); do grep -q '^from ' "$out" 2>/dev/null && break; ((status)) && break; sleep 0.1; done
  kill "$server" 2>/dev/null
  wait "$server" 2>/dev/null
  sed -n 's/^from //p' "$out"
  rm -f "$out"
  return $status
}
reach_ok=1
for host in p1 p2; do
  tcp_probe "${NS[gw]}" "${NS[$host]}" "${IP[$host]}" "${IP[$host]}" 7999 >/dev/null || reach_ok=0
done
if ((reach_ok)); then pass "network: gw reaches p1 and p2 over TCP"; else fail "network: gw cannot reach a provider"; fi
# Each home reaches the relay, which sees the connection come from the home's router (MASQUERADE).
nat_ok=1
for n in 1 2 3; do
  seen="$(tcp_probe "$PREFIX-h$n" "${NS[relay]}" "${IP[relay]}" "${IP[relay]}" 7999)" || {
    nat_ok=0
    say "h$n cannot reach the relay"
    continue
  }
  [[ "$seen" == "${ROUTER_IP[$n]}" ]] || {
    nat_ok=0
    say "the relay sees h$n's connection from '$seen', not from its router ${ROUTER_IP[$n]}"
  }
done
if ((nat_ok)); then
  pass "nat: h1, h2, h3 reach the relay, which sees each home's router address (MASQUERADE)"
else
  fail "nat: a home cannot reach the relay, or its router does not masquerade"
fi
# Nobody on the internet can open a connection into a home: not to the router's address, not to the
# home's private address (no route).
if tcp_probe "${NS[relay]}" "$PREFIX-h1" 0.0.0.0 "${ROUTER_IP[1]}" 7999 >/dev/null ||
  tcp_probe "${NS[relay]}" "$PREFIX-h1" 0.0.0.0 192.168.1.2 7999 >/dev/null; then
  fail "nat: the relay opened a connection into home 1"
else
  pass "nat: the internet cannot open a connection into home 1"
fi
# No namespace has a route out of the test: the routers and internet hosts have no default route, and a
# home's default route ends at its router.
for ns in "${CREATED_NS[@]}"; do
  [[ "$ns" == "$PREFIX"-h? ]] && continue
  if ip netns exec "$ns" ip route get 8.8.8.8 >/dev/null 2>&1; then
    fail "network: the namespace $ns has a route out (it should be isolated)"
  fi
done
if ip netns exec "$PREFIX-h1" timeout 5 node -e "
  require('net').connect(53, '8.8.8.8', () => process.exit(1)).on('error', () => process.exit(0))" <&- 9>&-; then
  :
else
  fail "network: home 1 could connect to 8.8.8.8 (it should be isolated)"
fi

# --- homes, model, keys -----------------------------------------------------------------------
export MYCEL_PASSWORD="multihost-test"
# The tiny test model and a key in each node's own home, in parallel. Each runs in its own session
# (setsid execs, so the pid is the process group) so that cleanup can end it and its children at once.
for host in "${NODES[@]}"; do
  HOME_OF[$host]="$TMP/home-$host"
  LOG[$host]="$TMP/$host.log"
  mkdir -p "${HOME_OF[$host]}"
  MYCEL_HOME="${HOME_OF[$host]}" setsid bash -c \
    'timeout 90 node "$1" --home "$2" model make-test && timeout 90 node "$1" --home "$2" init --key "$3"' \
    _ "$MYCEL" "${HOME_OF[$host]}" "mh-$host" >"$TMP/prepare-$host.out" 2>&1 </dev/null 9>&- &
  PREPARE[$host]=$!
done
MODEL_HASH=""
homes_ok=1
for host in "${NODES[@]}"; do
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
PREPARE=()
if ((homes_ok)); then
  pass "homes: test model ${MODEL_HASH:0:12}… (same hash in all ${#NODES[@]} homes) and a key per node"
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
    ip netns exec "${NS[$host]}" node "$MYCEL" --home "${HOME_OF[$host]}" "$@" \
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
# Stops a node: SIGTERM, then SIGKILL after 5 s.
stop_node() { # <host>
  local pid=${PID[$1]:-}
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  PID[$1]=""
}
json_field() { # <json> <js expression on v>
  node -e "const v = JSON.parse(process.argv[1]); const r = ($2); console.log(typeof r === 'string' ? r : JSON.stringify(r));" "$1" 9>&-
}
give_up() {
  fail "$1"
  FINISHED=1
  exit 1
}
# Waits until a line matching <regex> is in <host>'s log, at most <seconds>.
wait_log() { # <host> <regex> <seconds>
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    grep -Eq "$2" "${LOG[$1]}" 2>/dev/null && return 0
    sleep 0.3
  done
  return 1
}

declare -A ADDRESS_OF HOST_OF_ADDRESS
register_address() { # <host>: the Ethereum address it signs with, from its ready line
  ADDRESS_OF[$1]="$(json_field "${READY_LINE[$1]}" "v.address")"
  HOST_OF_ADDRESS[${ADDRESS_OF[$1],,}]=$1
}
client() { # <gateway host> <client args...>
  local host=$1
  shift
  ip netns exec "${NS[$host]}" node "$CLIENT" "$@" 9>&-
}

# Waits (at most DISCOVERY_TIMEOUT_S) until <gateway> lists every one of <hosts...>.
expect_listed() { # <gateway> <label> <hosts...>
  local gateway=$1 label=$2 listed status missing=""
  shift 2
  say "waiting (at most ${DISCOVERY_TIMEOUT_S} s) for $gateway to list $*"
  listed="$(client "$gateway" providers "${URL[$gateway]}" "$#" "$DISCOVERY_TIMEOUT_S")"
  status=$?
  say "providers: $listed"
  ((status == 0)) || give_up "$label: $gateway did not list $# providers within ${DISCOVERY_TIMEOUT_S} s"
  for host in "$@"; do
    grep -qi "${ADDRESS_OF[$host]}" <<<"$listed" || missing+=" $host"
  done
  [[ -z "$missing" ]] || give_up "$label: $gateway lists $# providers but not:$missing"
  pass "$label"
}

declare -A SERVED URL
LAST_HOST=""
chat() { # <gateway> <label> <prompt> <seed> [expected host]; returns 0 when it passed
  local gateway=$1 label=$2 prompt=$3 seed=$4 expected=${5:-} out status address content receipts reason host
  out="$(client "$gateway" chat "${URL[$gateway]}" "$MODEL_HASH" "$prompt" "$seed")"
  status=$?
  say "$label: $out"
  # One node for every field (each node start costs ~0.3-1 s on a busy machine).
  IFS=$'\x1f' read -r address content receipts reason < <(json_field "$out" \
    "[(v.providers ?? []).at(-1) ?? '', JSON.stringify(v.content ?? ''), v.receipts ?? 0, v.reason ?? ''].join('\\u001f')" 2>/dev/null)
  if ((status != 0)); then
    fail "$label: ${reason:-$out}"
    return 1
  fi
  host="${HOST_OF_ADDRESS[${address,,}]:-unknown}"
  SERVED[$host]=$((${SERVED[$host]:-0} + 1))
  LAST_HOST=$host
  if [[ -n "$expected" && "$host" != "$expected" ]]; then
    fail "$label: served by $host ($address), expected $expected"
    return 1
  fi
  pass "$label: answer $content with $receipts receipt(s), served by $host"
}

# Kills (SIGKILL) the provider of a pair that served the last request; sets SURVIVOR.
kill_last_server() { # <a> <b>
  local victim
  case "$LAST_HOST" in
    "$1") victim=$1 SURVIVOR=$2 ;;
    "$2") victim=$2 SURVIVOR=$1 ;;
    *) give_up "failover: no request succeeded, so there is no provider to kill" ;;
  esac
  say "killing $victim (SIGKILL, pid ${PID[$victim]}), which served the last request"
  kill -KILL "${PID[$victim]}"
  wait "${PID[$victim]}" 2>/dev/null
  PID[$victim]=""
  VICTIM=$victim
}

# ================================================================================================
# Part 1: the flat LAN
# ================================================================================================
say "part 1: starting provider 1 in ${NS[p1]}"
start_role p1 provider --key mh-p1 --model "$MODEL_HASH" --listen "/ip4/${IP[p1]}/tcp/4001"
wait_ready p1 || give_up "provider 1 did not start"
P1_MULTIADDR="$(json_field "${READY_LINE[p1]}" "v.multiaddrs.find((a) => a.startsWith('/ip4/${IP[p1]}/')) ?? ''")"
[[ -n "$P1_MULTIADDR" ]] || give_up "provider 1 announces no address on ${IP[p1]}: ${READY_LINE[p1]}"
say "provider 1 ready: $P1_MULTIADDR"

say "starting provider 2 in ${NS[p2]} (bootstrap: provider 1)"
start_role p2 provider --key mh-p2 --model "$MODEL_HASH" --listen "/ip4/${IP[p2]}/tcp/4001" --bootstrap "$P1_MULTIADDR"
say "starting the gateway in ${NS[gw]} (bootstrap: provider 1 only)"
start_role gw gateway --key mh-gw --host 127.0.0.1 --port 0 --listen "/ip4/${IP[gw]}/tcp/0" --bootstrap "$P1_MULTIADDR"
wait_ready p2 || give_up "provider 2 did not start"
wait_ready gw || give_up "the gateway did not start"
URL[gw]="$(json_field "${READY_LINE[gw]}" "v.url")"
say "provider 2 ready: $(json_field "${READY_LINE[p2]}" "v.multiaddrs.join(' ')")"
say "gateway ready: ${URL[gw]} (inside ${NS[gw]})"
pass "processes: 2 providers and a gateway ready in their namespaces"

for host in p1 p2; do
  register_address "$host"
  # Every address a provider announces must be one the others can dial: its namespace IP, not loopback.
  bad="$(json_field "${READY_LINE[$host]}" "v.multiaddrs.filter((a) => !a.startsWith('/ip4/${IP[$host]}/')).join(' ')")"
  if [[ -n "$bad" ]]; then
    fail "$host announces addresses other hosts cannot reach: $bad"
  fi
done

expect_listed gw "discovery: the gateway lists both providers (provider 2 found through the network)" p1 p2
for n in 1 2 3; do
  chat gw "chat $n" "Hello from the multihost test, request $n" "$n"
done
say "served before the kill: p1 ${SERVED[p1]:-0}, p2 ${SERVED[p2]:-0}"
kill_last_server p1 p2
for n in 4 5; do
  chat gw "chat $n after killing $VICTIM" "Still there? request $n" "$n" "$SURVIVOR"
done
if ((${SERVED[p1]:-0} > 0 && ${SERVED[p2]:-0} > 0)); then
  pass "both providers' addresses served at least one request (p1 ${SERVED[p1]}, p2 ${SERVED[p2]})"
else
  fail "only one provider ever served (p1 ${SERVED[p1]:-0}, p2 ${SERVED[p2]:-0})"
fi
stop_node p1
stop_node p2
stop_node gw
say "part 1 done; its nodes stopped"

# ================================================================================================
# Part 2: the internet, a relay, homes behind NAT
# ================================================================================================
say "part 2: starting the relay in ${NS[relay]} (--relay-data-limit $RELAY_DATA_LIMIT)"
# A public relay announces its address (until AutoNAT has confirmed a listened-on public address, libp2p
# announces none, and the first relay of a network has nobody to confirm it).
start_role relay relay --key mh-relay --listen "/ip4/${IP[relay]}/tcp/4001" --announce "/ip4/${IP[relay]}/tcp/4001" \
  --relay-data-limit "$RELAY_DATA_LIMIT"
wait_ready relay || give_up "the relay did not start"
RELAY_MULTIADDR="$(json_field "${READY_LINE[relay]}" "v.multiaddrs.find((a) => a.startsWith('/ip4/${IP[relay]}/tcp/4001/')) ?? ''")"
[[ -n "$RELAY_MULTIADDR" ]] || give_up "the relay announces no address on ${IP[relay]}: ${READY_LINE[relay]}"
RELAY_PEER="$(json_field "${READY_LINE[relay]}" "v.peerId")"
say "relay ready: $RELAY_MULTIADDR"

say "starting h1 (listens on its LAN address) and h2 (--listen none), both behind NAT, bootstrap: the relay"
start_role h1 provider --key mh-h1 --model "$MODEL_HASH" --listen "/ip4/${IP[h1]}/tcp/4001" --bootstrap "$RELAY_MULTIADDR"
start_role h2 provider --key mh-h2 --model "$MODEL_HASH" --listen none --bootstrap "$RELAY_MULTIADDR"
say "starting the gateway ngw behind r3 (no port forward for it), bootstrap: the relay"
start_role ngw gateway --key mh-ngw --host 127.0.0.1 --port 0 --listen "/ip4/${IP[ngw]}/tcp/4001" --bootstrap "$RELAY_MULTIADDR"
wait_ready h1 || give_up "h1 did not start"
wait_ready h2 || give_up "h2 did not start"
wait_ready ngw || give_up "ngw did not start"
URL[ngw]="$(json_field "${READY_LINE[ngw]}" "v.url")"
register_address h1
register_address h2
pass "processes: a relay, 2 providers at home and a gateway behind NAT ready"

# A provider that listens on nothing is ready only once it holds a relay slot: its ready line announces its
# /p2p-circuit address through the relay, and nothing else. (h1, listening on its LAN address, reserves a
# slot too; that it is reachable only through the relay is checked by being served through it below.)
circuit="$(json_field "${READY_LINE[h2]}" \
  "v.multiaddrs.every((a) => a.includes('/p2p/$RELAY_PEER/p2p-circuit')) ? v.multiaddrs.length : 0")"
if ((circuit > 0)); then
  pass "relay: h2 (--listen none) announces only its /p2p-circuit address through the relay"
else
  fail "relay: h2 (--listen none) announces other addresses than its circuit through the relay: ${READY_LINE[h2]}"
fi

expect_listed ngw "discovery: the gateway behind NAT lists both providers at home (through the relay)" h1 h2
for n in 1 2 3; do
  chat ngw "NAT chat $n" "Hello from behind a NAT, request $n" "$((10 + n))"
done
# Both ends are behind NAT: the connection must stay relayed (see the header for why DCUtR cannot work).
for host in h1 h2; do
  ((${SERVED[$host]:-0} > 0)) || continue
  out="$(client ngw connection "${URL[ngw]}" "${ADDRESS_OF[$host]}" relayed 10)"
  if [[ $? == 0 ]]; then
    pass "nat: ngw reaches $host through the relay (connection: relayed)"
  else
    fail "nat: ngw's connection to $host is not relayed: $out"
  fi
  if grep -q "connection upgraded to direct" "${LOG[$host]}"; then
    fail "nat: $host logs a direct upgrade although both ends are behind NAT"
  fi
done

# The relay's data limit, reached in the middle of a stream: the gateway must carry on (resume on the same
# provider over a new relayed connection, which has a fresh limit, or fail over) and lose no token. Both providers are still up for this.
say "a stream of $LONG_MAX_TOKENS tokens through the relay (its limit: $RELAY_DATA_LIMIT bytes per relayed connection)"
long="$(client ngw stream "${URL[ngw]}" "$MODEL_HASH" "Tell me a long story." 7 "$LONG_MAX_TOKENS")"
long_status=$?
say "long stream: $(json_field "$long" "({...v, content: v.content?.length + ' chars'})" 2>/dev/null || echo "$long")"
if ((long_status == 0)); then
  long_failovers="$(json_field "$long" "v.failovers ?? 0")"
  # A cut relayed stream resumes on the same provider over a new relayed connection (logged by the gateway), or
  # fails over to another provider.
  long_resumes="$(grep -c "stream through a relay was cut" "${LOG[ngw]}")"
  if ((long_failovers + long_resumes >= 1)); then
    pass "relay limit: the relay cut the stream's connection mid-stream and the gateway carried on ($long_resumes resume(s) on the same provider, $long_failovers failover(s))"
  else
    fail "relay limit: the stream crossed no relay limit (no failover): lower RELAY_DATA_LIMIT or raise LONG_MAX_TOKENS"
  fi
else
  fail "relay limit: the long stream through the relay failed"
fi

kill_last_server h1 h2
for n in 4 5; do
  chat ngw "NAT chat $n after killing $VICTIM" "Still there behind the NAT? request $n" "$((10 + n))" "$SURVIVOR"
done

# A gateway on the internet (a public address, announced with --announce): the provider at home can dial it
# through its own NAT, so their connection ends direct, by DCUtR's upgrade of the relayed one (or by the
# provider dialling the gateway first, where it learned the gateway's address before the gateway dialled).
say "starting the public gateway pgw at ${IP[pgw]} on the internet, bootstrap: the relay"
start_role pgw gateway --key mh-pgw --host 127.0.0.1 --port 0 --listen "/ip4/${IP[pgw]}/tcp/4002" \
  --announce "/ip4/${IP[pgw]}/tcp/4002" --bootstrap "$RELAY_MULTIADDR"
wait_ready pgw || give_up "pgw did not start"
URL[pgw]="$(json_field "${READY_LINE[pgw]}" "v.url")"
if wait_log pgw "reachability.*status=public" 30; then
  pass "reachability: the public gateway with --announce is reachable (reachability: public)"
else
  fail "reachability: the public gateway with --announce was not judged reachable within 30 s"
fi
expect_listed pgw "discovery: the public gateway lists the surviving provider at home" "$SURVIVOR"
chat pgw "public chat 1" "Hello from the internet" 21 "$SURVIVOR"
out="$(client pgw connection "${URL[pgw]}" "${ADDRESS_OF[$SURVIVOR]}" direct 20)"
if [[ $? == 0 ]]; then
  how="the provider dialled the gateway directly"
  if wait_log "$SURVIVOR" "connection upgraded to direct" 3 || wait_log pgw "connection upgraded to direct" 1; then
    how="DCUtR upgraded the relayed connection (connection upgraded to direct)"
  fi
  pass "nat traversal: pgw's connection to $SURVIVOR behind NAT is direct: $how"
else
  fail "nat traversal: pgw's connection to $SURVIVOR did not become direct within 20 s: $out"
fi
chat pgw "public chat 2 (direct)" "Hello again, now directly" 22 "$SURVIVOR"

# The reference for the long stream: the same greedy request over this direct connection, which no relay
# limit cuts. Every token of the relayed stream must be there, in order.
reference="$(client pgw stream "${URL[pgw]}" "$MODEL_HASH" "Tell me a long story." 7 "$LONG_MAX_TOKENS")"
reference_status=$?
say "reference: $(json_field "$reference" "({...v, content: v.content?.length + ' chars'})" 2>/dev/null || echo "$reference")"
if ((long_status == 0 && reference_status == 0)); then
  # Every token is there (the count the receipts sign), and up to the first cut the text is the greedy answer
  # itself. After a cut the provider evaluates the tokens so far
  # again; a prefix longer than the exact-replay window (PROTOCOL.md) is evaluated in one batch, whose numerics
  # may flip a near-tie, so beyond the first cut the continuation may differ from the uncut answer.
  # The first cut after the stream made progress (a relayed dial closed while opening is logged with 0 tokens).
  first_cut="$(grep -o "stream through a relay was cut.*tokensSoFar=[0-9]*" "${LOG[ngw]}" | grep -o "[0-9]*$" | grep -m1 -v "^0$")"
  first_cut="${first_cut:-$LONG_MAX_TOKENS}"
  verdict="$(node -e "
    const [a, b] = process.argv.slice(1, 3).map((t) => JSON.parse(t));
    const cut = Number(process.argv[3]);
    const whole = a.completion_tokens === Number(process.argv[4]);
    // A character is 1 to 4 tokens (bytes): the first cut / 4 characters all came before the cut.
    const before = Math.floor(cut / 4);
    const same = a.content.slice(0, before) === b.content.slice(0, before);
    let first = 0;
    while (first < a.content.length && a.content[first] === b.content[first]) first++;
    console.log(whole && same ? 'yes' : 'no: whole ' + whole + ', equal before the cut ' + same + ', first difference at ' + first);" \
    "$long" "$reference" "$first_cut" "$LONG_MAX_TOKENS" 9>&-)"
  if [[ "$verdict" == yes ]]; then
    pass "relay limit: the $LONG_MAX_TOKENS-token stream cut by the relay lost no token (all there; equal to the greedy answer over a direct connection up to the first cut, at token $first_cut)"
  else
    fail "relay limit: the stream cut by the relay lost or changed tokens ($verdict; first cut at token $first_cut)"
  fi
else
  fail "relay limit: the long stream or its reference failed"
fi

FINISHED=1
say "runtime $((SECONDS - START_TIME)) s (cleanup follows)"
exit 0 # the EXIT trap cleans up and prints `N passed, M failed`, exiting non-zero if M > 0
