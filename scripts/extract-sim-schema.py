#!/usr/bin/env python3
"""Extract the part of the official Proxmox VE API schema that the simulator serves.

Source: the Proxmox VE API viewer's apidata (pve-docs `api-viewer/apidata.js`, PVE 9.1),
converted to JSON at ../shared/pve-api/pve-api-schema.json. Run from the repository root:

    python3 scripts/extract-sim-schema.py ../shared/pve-api/pve-api-schema.json > src/sim/api-schema.json
    python3 scripts/extract-sim-schema.py --permissions ../shared/pve-api/pve-api-schema.json > src/sim/api-permissions.json

For every (method, path) the simulator serves, it keeps each parameter's type, optional flag,
enum, minimum/maximum, pattern, maxLength, format (a name, or for property strings the
sub-schema's keys with their aliases, key aliases, formats and patterns) and typetext, which is what the simulator validates requests against.
With --permissions it writes instead, for the same endpoints, the permission entry (`check`,
`user`, `description`) and `allowtoken`, which is what the simulator checks ACLs against.
"""
import json
import sys

SERVED = [
    ("GET", "/version"),
    ("POST", "/access/ticket"),
    ("GET", "/access/permissions"),
    ("GET", "/cluster/resources"),
    ("GET", "/cluster/nextid"),
    ("GET", "/nodes"),
    ("GET", "/nodes/{node}/storage"),
    ("GET", "/storage/{storage}"),
    ("GET", "/nodes/{node}/storage/{storage}/content"),
    ("GET", "/nodes/{node}/storage/{storage}/content/{volume}"),
    ("PUT", "/nodes/{node}/storage/{storage}/content/{volume}"),
    ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}"),
    ("POST", "/nodes/{node}/storage/{storage}/download-url"),
    ("POST", "/nodes/{node}/storage/{storage}/upload"),
    ("GET", "/nodes/{node}/qemu"),
    ("POST", "/nodes/{node}/qemu"),
    ("GET", "/nodes/{node}/qemu/{vmid}/config"),
    ("POST", "/nodes/{node}/qemu/{vmid}/config"),
    ("PUT", "/nodes/{node}/qemu/{vmid}/config"),
    ("GET", "/nodes/{node}/qemu/{vmid}/pending"),
    ("PUT", "/nodes/{node}/qemu/{vmid}/resize"),
    ("POST", "/nodes/{node}/qemu/{vmid}/move_disk"),
    ("POST", "/nodes/{node}/qemu/{vmid}/template"),
    ("POST", "/nodes/{node}/qemu/{vmid}/clone"),
    ("POST", "/nodes/{node}/qemu/{vmid}/migrate"),
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current"),
    ("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces"),
    ("POST", "/nodes/{node}/qemu/{vmid}/agent/ping"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/stop"),
    ("DELETE", "/nodes/{node}/qemu/{vmid}"),
    ("GET", "/nodes/{node}/tasks"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"),
    ("GET", "/nodes/{node}/tasks/{upid}/log"),
    ("GET", "/pools"),
    ("POST", "/pools"),
    ("PUT", "/pools"),
    ("DELETE", "/pools"),
    ("PUT", "/pools/{poolid}"),
    ("DELETE", "/pools/{poolid}"),
    ("GET", "/nodes/{node}/network"),
    ("GET", "/cluster/mapping/pci"),
    ("GET", "/nodes/{node}/lxc"),
    ("POST", "/nodes/{node}/lxc"),
    ("DELETE", "/nodes/{node}/lxc/{vmid}"),
]

# Enums the schema leaves null because Proxmox computes them at runtime.
RUNTIME_ENUMS = {
    # pve-storage KNOWN_COMPRESSION_FORMATS (PVE::Storage::decompressor_info)
    ("POST", "/nodes/{node}/storage/{storage}/download-url", "compression"): ["gz", "lzo", "zst", "bz2"],
}

KEEP = ("type", "optional", "enum", "minimum", "maximum", "pattern", "maxLength", "typetext", "default", "requires")
# What parse_property_string and check_object read of a property string's keys (pve-common
# `PVE::JSONSchema`): aliases and key aliases, the default key, and each key's own checks.
SUB_KEEP = ("type", "enum", "optional", "default_key", "alias", "keyAlias", "minimum", "maximum",
            "format", "pattern", "maxLength", "minLength", "requires")


def index(tree, out):
    for node in tree:
        out[node["path"]] = node
        index(node.get("children") or [], out)
    return out


def param(spec):
    kept = {k: spec[k] for k in KEEP if k in spec}
    fmt = spec.get("format")
    if isinstance(fmt, dict):
        kept["format"] = {
            key: {k: sub[k] for k in SUB_KEEP if k in sub}
            for key, sub in fmt.items()
        }
    elif fmt is not None:
        kept["format"] = fmt
    return kept


def main():
    args = sys.argv[1:]
    permissions = "--permissions" in args
    args = [a for a in args if a != "--permissions"]
    schema = json.load(open(args[0]))
    by_path = index(schema, {})
    out = {}
    for method, path in SERVED:
        info = by_path[path]["info"][method]
        if permissions:
            perm = info.get("permissions") or {}
            out[f"{method} {path}"] = {
                "allowtoken": info.get("allowtoken", 1),
                **{k: perm[k] for k in ("check", "user", "description") if k in perm},
            }
            continue
        props = (info.get("parameters") or {}).get("properties") or {}
        params = {name: param(spec) for name, spec in sorted(props.items())}
        for (m, p, name), values in RUNTIME_ENUMS.items():
            if (m, p) == (method, path) and name in params:
                params[name]["enum"] = values
        out[f"{method} {path}"] = params
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
