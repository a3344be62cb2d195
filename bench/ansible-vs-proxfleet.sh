#!/usr/bin/env bash
# Side by side with Ansible: the quickstart's job (cloud image → UEFI + TPM template → 10 clones,
# started) done by an Ansible playbook using community.proxmox and by proxfleet, each against its
# own fresh `proxfleet sim serve --tls` (same task durations, certificate verified), each run
# twice: the first run builds, the re-run should change nothing. Prints the four wall times and
# the ratios. Not run by CI.
#
#   bench/ansible-vs-proxfleet.sh
#
# Environment: TASK_SCALE (default 0.05: a full clone 0.6 s, a download 1.5 s), LATENCY_MS
# (default 0), VENV (default ~/.cache/proxfleet-bench/ansible-venv; made with ansible,
# proxmoxer and requests from PyPI when missing), PROXFLEET (default target/release/proxfleet,
# built when missing), KEEP=1 to keep the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

task_scale=${TASK_SCALE:-0.05}
latency_ms=${LATENCY_MS:-0}
venv=${VENV:-$HOME/.cache/proxfleet-bench/ansible-venv}
proxfleet=${PROXFLEET:-$root/target/release/proxfleet}
token_id='root@pam!bench'
token_secret='5b0c9a1e-7d3f-4c2b-9e8a-1f6d2c4b8a70'

if [[ ! -x $proxfleet ]]; then
  echo "== building proxfleet (release)"
  cargo build --release --locked
fi
if [[ ! -x $venv/bin/ansible-playbook ]]; then
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

# A fresh simulator for one tool; its log and certificate go to $work/NAME.*.
start_sim() {
  local name=$1
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

# "N requests" for an Ansible run, and every refused one.
ansible_requests() {
  local file=$1.requests
  touch "$file"
  echo "$(wc -l <"$file") requests, $(grep -cv '^2' "$file") refused"
  grep -v '^2' "$file" | sed 's/^/     /' || true
}

# "N requests (W writes)" for a proxfleet run, from its -v summary.
proxfleet_requests() {
  grep -m1 '^requests: ' "$1" | sed -E 's/^requests: ([0-9]+)/\1 requests/'
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

echo "== Ansible $("$venv/bin/ansible" --version | head -1 | sed 's/.*core //; s/\]//'), community.proxmox $("$venv/bin/ansible-galaxy" collection list community.proxmox 2>/dev/null | awk '$1 == "community.proxmox" { print $2; exit }')"
start_sim ansible
ansible_first=$(timed "ansible-playbook (first run)" run_ansible "$work/ansible-1.log")
echo "   first run:  ${ansible_first} s, $(ansible_requests "$work/ansible-1.log")"
ansible_again=$(timed "ansible-playbook (re-run)" run_ansible "$work/ansible-2.log")
echo "   re-run:     ${ansible_again} s, $(ansible_requests "$work/ansible-2.log"), $(grep -Eo 'changed=[0-9]+' "$work/ansible-2.log" | head -1)"
stop_sim

echo "== proxfleet $("$proxfleet" --version | awk '{print $2}')"
start_sim proxfleet
proxfleet_first=$(timed "proxfleet apply (first run)" run_proxfleet "$work/proxfleet-1.log")
echo "   first run:  ${proxfleet_first} s, $(proxfleet_requests "$work/proxfleet-1.log")"
proxfleet_again=$(timed "proxfleet apply (re-run)" run_proxfleet "$work/proxfleet-2.log")
echo "   re-run:     ${proxfleet_again} s, $(proxfleet_requests "$work/proxfleet-2.log"), $(grep -m1 -E '^No changes|^Plan:' "$work/proxfleet-2.log")"
stop_sim

python3 - "$ansible_first" "$ansible_again" "$proxfleet_first" "$proxfleet_again" "$task_scale" "$latency_ms" <<'EOF'
import sys
af, aa, pf, pa = map(float, sys.argv[1:5])
print()
print(f"simulator: --task-scale {sys.argv[5]}, --latency-ms {sys.argv[6]}, HTTPS with verification")
print(f"{'':12}{'Ansible':>10}{'proxfleet':>11}{'Ansible / proxfleet':>21}")
print(f"{'first run':12}{af:>9.2f}s{pf:>10.3f}s{af / pf:>20.1f}×")
print(f"{'re-run':12}{aa:>9.2f}s{pa:>10.3f}s{aa / pa:>20.0f}×")
EOF
