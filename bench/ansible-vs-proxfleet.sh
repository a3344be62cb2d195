#!/usr/bin/env bash
# Side by side with Ansible: the quickstart's job (cloud image → UEFI + TPM template → 10 clones,
# started) done by an Ansible playbook using community.proxmox and by proxfleet, each against its
# own fresh `proxfleet sim serve --tls` (same task durations, certificate verified), each run
# twice: the first run builds, the re-run should change nothing. The pair is repeated ROUNDS
# times (default 3), each round on fresh simulators; prints each run's wall time, requests and
# writes (a write is any request but a GET: the re-run should send none), then the minimum and
# median of each and the ratios of the medians. Not run by CI.
#
#   bench/ansible-vs-proxfleet.sh
#
# Environment: TASK_SCALE (default 0.05: a full clone 0.6 s, a download 1.5 s), LATENCY_MS
# (default 0), ROUNDS (default 3), VENV (default ~/.cache/proxfleet-bench/ansible-venv; made
# with ansible, proxmoxer and requests from PyPI when missing), PROXFLEET (default
# target/release/proxfleet, built when missing), PROXFLEET_ONLY=1 to run proxfleet alone (no
# Ansible needed), KEEP=1 to keep the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

task_scale=${TASK_SCALE:-0.05}
latency_ms=${LATENCY_MS:-0}
rounds=${ROUNDS:-3}
proxfleet_only=${PROXFLEET_ONLY:-0}
venv=${VENV:-$HOME/.cache/proxfleet-bench/ansible-venv}
proxfleet=${PROXFLEET:-$root/target/release/proxfleet}
token_id='root@pam!bench'
token_secret='5b0c9a1e-7d3f-4c2b-9e8a-1f6d2c4b8a70'

if [[ ! -x $proxfleet ]]; then
  echo "== building proxfleet (release)"
  cargo build --release --locked
fi
if [[ $proxfleet_only != 1 && ! -x $venv/bin/ansible-playbook ]]; then
  echo "== installing ansible, proxmoxer and requests into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check ansible proxmoxer requests
fi

work=$(mktemp -d)
sim_pid=
stop_sim() {
  if [[ -n $sim_pid ]]; then
    kill "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
    sim_pid=
  fi
}
cleanup() {
  stop_sim
  if [[ ${KEEP:-0} == 1 ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# A fresh simulator for one tool and round (an empty cluster: its state file is new); its
# log, certificate and state go to $work/NAME.*.
start_sim() {
  local name=$1
  rm -f "$work/$name.state.json" "$work/$name.ca.pem"
  port=$(free_port)
  "$proxfleet" sim serve --tls --listen "127.0.0.1:$port" \
    --ca-file "$work/$name.ca.pem" --state "$work/$name.state.json" \
    --token "$token_id=$token_secret" \
    --task-scale "$task_scale" --latency-ms "$latency_ms" \
    >"$work/$name.sim.log" 2>&1 &
  sim_pid=$!
  for _ in $(seq 100); do
    if [[ -s $work/$name.ca.pem ]] && curl -sf --cacert "$work/$name.ca.pem" \
      -H "Authorization: PVEAPIToken=$token_id=$token_secret" \
      "https://127.0.0.1:$port/api2/json/version" >/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "the simulator did not start:" >&2
  cat "$work/$name.sim.log" >&2
  exit 1
}

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }

# Every HTTP request the Ansible modules send, with the simulator's status (and message when it
# refused), logged by wrapping requests' Session.request in the modules' Python processes.
mkdir -p "$work/pylog"
cat >"$work/pylog/sitecustomize.py" <<'PY'
import os
try:
    import requests.sessions as _sessions
    _request = _sessions.Session.request
    def _logged(self, method, url, *args, **kwargs):
        response = _request(self, method, url, *args, **kwargs)
        line = f"{response.status_code} {method} {url.split('/api2/json', 1)[-1]}"
        if response.status_code >= 400:
            line += " -> " + response.text.strip().replace("\n", " ")[:300]
        with open(os.environ["PROXFLEET_BENCH_REQUEST_LOG"], "a") as log:
            log.write(line + "\n")
        return response
    _sessions.Session.request = _logged
except Exception:
    pass
PY

run_ansible() {
  local log=$1
  PROXMOX_HOST=127.0.0.1 PROXMOX_PORT=$port PROXMOX_USER=root@pam \
    PROXMOX_TOKEN_ID=bench PROXMOX_TOKEN_SECRET=$token_secret \
    PROXMOX_VALIDATE_CERTS=true REQUESTS_CA_BUNDLE=$work/ansible.ca.pem \
    ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false \
    ANSIBLE_PYTHON_INTERPRETER=$venv/bin/python \
    PYTHONPATH=$work/pylog PROXFLEET_BENCH_REQUEST_LOG=$log.requests \
    "$venv/bin/ansible-playbook" "$root/bench/ansible/quickstart.yml" >"$log" 2>&1
}

# "REQUESTS WRITES" of an Ansible run (a write: any method but GET), from the request log.
ansible_counts() {
  local file=$1.requests
  touch "$file"
  echo "$(wc -l <"$file") $(awk '$2 != "GET"' "$file" | wc -l)"
}

# Every request of an Ansible run the simulator refused.
ansible_refused() {
  grep -v '^2' "$1.requests" | sed 's/^/     refused: /' || true
}

# "REQUESTS WRITES" of a proxfleet run, from its -v summary (`requests: N (W writes)`).
proxfleet_counts() {
  grep -m1 '^requests: ' "$1" | sed -E 's/^requests: ([0-9]+) \(([0-9]+) writes\)/\1 \2/'
}

run_proxfleet() {
  local log=$1
  PROXMOX_VE_ENDPOINT=https://127.0.0.1:$port PROXMOX_VE_CA_FILE=$work/proxfleet.ca.pem \
    PROXMOX_VE_API_TOKEN="$token_id=$token_secret" \
    "$proxfleet" -v apply -f "$root/bench/quickstart-10.yaml" --auto-approve >"$log" 2>&1
}

# Run one tool's command, time it, and show the log's tail if it failed.
timed() {
  local label=$1 fn=$2 log=$3 started ended
  started=$(now)
  if ! "$fn" "$log"; then
    echo "$label failed; the end of its log ($log):" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  ended=$(now)
  elapsed "$started" "$ended"
}

# One tool, one round: a first run and a re-run on a fresh simulator; appends
# "TOOL ROUND first|rerun SECONDS REQUESTS WRITES" lines to $work/results.
one_round() {
  local tool=$1 round=$2 seconds counts log
  start_sim "$tool"
  for pass in first rerun; do
    log=$work/$tool-$round-$pass.log
    seconds=$(timed "$tool ($pass run, round $round)" "run_$tool" "$log")
    counts=$("${tool}_counts" "$log")
    echo "$tool $round $pass $seconds $counts" >>"$work/results"
    echo "   round $round, $pass run: ${seconds} s; requests, writes: $counts"
    if [[ $tool == ansible ]]; then ansible_refused "$log"; fi
  done
  stop_sim
}

touch "$work/results"
tools=(proxfleet)
if [[ $proxfleet_only != 1 ]]; then
  tools=(ansible proxfleet)
  # Whole outputs are read (sed -n, awk without exit): cutting them short breaks Ansible's pipe.
  echo "== Ansible $("$venv/bin/ansible" --version | sed -n '1s/.*core //; 1s/\]//p'), community.proxmox $("$venv/bin/ansible-galaxy" collection list community.proxmox 2>/dev/null | awk '$1 == "community.proxmox" && !v { v = $2 } END { print v }')"
fi
echo "== proxfleet $("$proxfleet" --version | awk '{print $2}'), $rounds rounds"
for round in $(seq "$rounds"); do
  for tool in "${tools[@]}"; do
    echo "== $tool, round $round"
    one_round "$tool" "$round"
  done
done

python3 - "$work/results" "$task_scale" "$latency_ms" <<'EOF'
import statistics
import sys

rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
print()
print(f"simulator: --task-scale {sys.argv[2]}, --latency-ms {sys.argv[3]}, HTTPS with verification")
print(f"{'tool':10}{'run':7}{'min s':>9}{'median s':>10}{'requests':>10}{'writes':>8}")
medians = {}
for tool in ("ansible", "proxfleet"):
    for run in ("first", "rerun"):
        mine = [r for r in rows if r[0] == tool and r[2] == run]
        if not mine:
            continue
        seconds = [float(r[3]) for r in mine]
        requests = statistics.median(int(r[4]) for r in mine)
        writes = statistics.median(int(r[5]) for r in mine)
        medians[(tool, run)] = statistics.median(seconds)
        print(f"{tool:10}{run:7}{min(seconds):>9.3f}{medians[(tool, run)]:>10.3f}{requests:>10.0f}{writes:>8.0f}")
for run in ("first", "rerun"):
    if ("ansible", run) in medians:
        ratio = medians[("ansible", run)] / medians[("proxfleet", run)]
        print(f"Ansible / proxfleet, {run}, medians: {ratio:.1f}x")
EOF
