#!/usr/bin/env python3
"""A second opinion: run proxfleet's quickstart against fakepve, an independent fake of the
Proxmox VE 9 API (PyPI `fakepve`), to check that what proxfleet sends is what Proxmox accepts.

    python3 scripts/fakepve_check.py target/debug/proxfleet examples/quickstart.yaml
    python3 scripts/fakepve_check.py target/debug/proxfleet examples/homelab.yaml --skip-checks
    python3 scripts/fakepve_check.py target/debug/proxfleet examples/rollout.yaml --then NEXT.yaml

Starts fakepve in this process on loopback with TLS and an API token, then runs
`apply` -> `plan` (must say "No changes.") -> `destroy` through the proxfleet binary, verifying
the fake's certificate with its CA file. Exits non-zero on the first failure.

`apply` and `plan` run proxfleet's preflight checks first. fakepve answers the endpoints it
does not model (`/cluster/mapping/pci` among them) with values made up from the schema, so a
spec whose checks depend on those (the homelab's GPU mapping) passes `--skip-checks` on to
`apply` and `plan`.

With `--then NEXT`, a second spec is applied after the first (and must then plan nothing)
before `destroy`: a rollout to a new template build, say.
"""
import asyncio
import os
import subprocess
import sys
import tempfile

from fakepve import FakePve
from fakepve.certs import make_cert

TOKEN_ID = "root@pam!proxfleet"
TOKEN_SECRET = "5f0e3c1a-7d2b-4c9e-8a61-2b3c4d5e6f70"


def run(binary, spec, env, *args):
    cmd = [binary, *args, "-f", spec]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    print("$ proxfleet " + " ".join(args), flush=True)
    print(proc.stdout, flush=True)
    if proc.stderr:
        print(proc.stderr, file=sys.stderr, flush=True)
    return proc


async def main(binary, spec, skip_checks=False, then=None):
    tmp = tempfile.mkdtemp(prefix="fakepve-check-")
    # The certificate is self-signed: it is its own CA.
    certfile, keyfile, _ = make_cert(tmp, hosts=("127.0.0.1",))
    cafile = certfile
    pve = FakePve(user="root@pam", password="secret", host="127.0.0.1", port=0)
    pve.time_scale = 0
    pve.apitokens[TOKEN_ID] = TOKEN_SECRET
    # A stock `local` storage holds iso,vztmpl,backup; the quickstart needs `import` enabled,
    # as an operator does with `pvesm set local --content iso,vztmpl,backup,import`.
    pve.storages["local"]["content"] = "iso,vztmpl,backup,import"
    await pve.start(certfile, keyfile)
    env = dict(os.environ)
    env["PROXMOX_VE_ENDPOINT"] = f"https://{pve.host}:{pve.port}"
    env["PROXMOX_VE_API_TOKEN"] = f"{TOKEN_ID}={TOKEN_SECRET}"
    env["PROXMOX_VE_CA_FILE"] = cafile
    loop = asyncio.get_running_loop()
    failures = []
    try:
        skip = ("--skip-checks",) if skip_checks else ()
        applied = lambda p: p.returncode == 0
        converged = lambda p: p.returncode == 0 and p.stdout.startswith("No changes.")
        steps = [
            (spec, ("apply", "--auto-approve", *skip), applied),
            (spec, ("plan", *skip), converged),
        ]
        if then:
            steps += [
                (then, ("apply", "--auto-approve", *skip), applied),
                (then, ("plan", *skip), converged),
            ]
        steps.append((then or spec, ("destroy", "--auto-approve"), applied))
        for file, args, ok in steps:
            proc = await loop.run_in_executor(None, run, binary, file, env, *args)
            if not ok(proc):
                failures.append(" ".join(args))
                break
    finally:
        await pve.stop()
    if failures:
        print(f"fakepve check FAILED at: {failures[0]}", file=sys.stderr)
        return 1
    print(f"fakepve check: {len(steps)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    rest = sys.argv[3:]
    then = rest[rest.index("--then") + 1] if "--then" in rest else None
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], "--skip-checks" in rest, then)))
