//! The `cpu` option of a VM (`pve-vm-cpu-conf`, qemu-server `PVE/QemuServer/CPUConfig.pm`):
//! the keys of `$cpu_fmt`, and `validate_vm_cpu_conf`, which runs after the property string
//! parsed and checked: the model must be a QEMU model, one of the built-in `x86-64-v*` models,
//! or a `custom-` model defined in `/etc/pve/virtual-guest/cpu-models.conf` (the simulator
//! defines none); a VM's own flags must come from the short list qemu-server allows; and
//! `reported-model` belongs to custom model definitions only.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// Every model `get_all_cpu_models` knows: the x86_64 and aarch64 lists of
/// `initialize_cpu_models` and `host` (the simulator's nodes are x86_64), sorted as the
/// `reported-model` enumeration is (`lc`).
const QEMU_MODELS: [&str; 101] = [
    "486",
    "a64fx",
    "athlon",
    "Broadwell",
    "Broadwell-IBRS",
    "Broadwell-noTSX",
    "Broadwell-noTSX-IBRS",
    "Cascadelake-Server",
    "Cascadelake-Server-noTSX",
    "Cascadelake-Server-v2",
    "Cascadelake-Server-v4",
    "Cascadelake-Server-v5",
    "ClearwaterForest",
    "Conroe",
    "Cooperlake",
    "Cooperlake-v2",
    "core2duo",
    "coreduo",
    "cortex-a35",
    "cortex-a53",
    "cortex-a55",
    "cortex-a57",
    "cortex-a710",
    "cortex-a72",
    "cortex-a76",
    "EPYC",
    "EPYC-Genoa",
    "EPYC-Genoa-v2",
    "EPYC-IBPB",
    "EPYC-Milan",
    "EPYC-Milan-v2",
    "EPYC-Milan-v3",
    "EPYC-Rome",
    "EPYC-Rome-v2",
    "EPYC-Rome-v3",
    "EPYC-Rome-v4",
    "EPYC-Rome-v5",
    "EPYC-Turin",
    "EPYC-v3",
    "EPYC-v4",
    "EPYC-v5",
    "GraniteRapids",
    "GraniteRapids-v2",
    "GraniteRapids-v3",
    "Haswell",
    "Haswell-IBRS",
    "Haswell-noTSX",
    "Haswell-noTSX-IBRS",
    "host",
    "Icelake-Client",
    "Icelake-Client-noTSX",
    "Icelake-Server",
    "Icelake-Server-noTSX",
    "Icelake-Server-v3",
    "Icelake-Server-v4",
    "Icelake-Server-v5",
    "Icelake-Server-v6",
    "Icelake-Server-v7",
    "IvyBridge",
    "IvyBridge-IBRS",
    "KnightsMill",
    "kvm32",
    "kvm64",
    "max",
    "Nehalem",
    "Nehalem-IBRS",
    "neoverse-n1",
    "neoverse-n2",
    "neoverse-v1",
    "Opteron_G1",
    "Opteron_G2",
    "Opteron_G3",
    "Opteron_G4",
    "Opteron_G5",
    "Penryn",
    "pentium",
    "pentium2",
    "pentium3",
    "phenom",
    "qemu32",
    "qemu64",
    "SandyBridge",
    "SandyBridge-IBRS",
    "SapphireRapids",
    "SapphireRapids-v2",
    "SapphireRapids-v3",
    "SapphireRapids-v4",
    "SierraForest",
    "SierraForest-v2",
    "SierraForest-v3",
    "Skylake-Client",
    "Skylake-Client-IBRS",
    "Skylake-Client-noTSX-IBRS",
    "Skylake-Client-v4",
    "Skylake-Server",
    "Skylake-Server-IBRS",
    "Skylake-Server-noTSX-IBRS",
    "Skylake-Server-v4",
    "Skylake-Server-v5",
    "Westmere",
    "Westmere-IBRS",
];

/// `$builtin_models_by_arch->{x86_64}`: abstract models with a fixed flag set.
const BUILTIN_MODELS: [&str; 4] = ["x86-64-v2", "x86-64-v2-AES", "x86-64-v3", "x86-64-v4"];

/// `supported_cpu_flags_names` (`PVE/QemuServer/CPUFlags.pm`), sorted: the flags a VM's own
/// `cpu` may set.
const VM_FLAGS: [&str; 13] = [
    "aes",
    "amd-no-ssb",
    "amd-ssbd",
    "hv-evmcs",
    "hv-tlbflush",
    "ibpb",
    "md-clear",
    "nested-virt",
    "pcid",
    "pdpe1gb",
    "spec-ctrl",
    "ssbd",
    "virt-ssbd",
];

/// `$cpu_fmt` as the simulator's property-string checker reads a format.
pub(super) fn format() -> &'static Map<String, Value> {
    static FORMAT: OnceLock<Map<String, Value>> = OnceLock::new();
    FORMAT.get_or_init(|| {
        let value = json!({
            "cputype": {"type": "string", "optional": 1, "default_key": 1},
            "reported-model": {"type": "string", "optional": 1, "enum": QEMU_MODELS.as_slice()},
            "hidden": {"type": "boolean", "optional": 1},
            "hv-vendor-id": {"type": "string", "optional": 1, "pattern": "[a-zA-Z0-9]{1,12}"},
            "flags": {"type": "string", "optional": 1,
                      "pattern": "([+-])([a-zA-Z0-9\\-_\\.]+)(;([+-])([a-zA-Z0-9\\-_\\.]+))*"},
            "guest-phys-bits": {"type": "integer", "optional": 1, "minimum": 32, "maximum": 64},
            "phys-bits": {"type": "string", "optional": 1, "format": "pve-phys-bits"},
            "level": {"type": "integer", "optional": 1, "minimum": 0, "maximum": 4_294_967_295u64},
        });
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    })
}

/// `validate_vm_cpu_conf`, on the keys `parse_property_string` found; its `die` message.
pub(super) fn validate_vm_cpu_conf(
    parsed: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    // `validate_cpu_conf`: the type is required, though the schema cannot say so.
    let Some(cputype) = parsed.get("cputype").filter(|t| !t.is_empty()) else {
        return Err("CPU is missing cputype\n".into());
    };
    if let Some(custom) = cputype.strip_prefix("custom-") {
        // `get_custom_model` with an empty `cpu-models.conf`.
        return Err(format!("Custom cputype '{custom}' not found\n"));
    }
    if !QEMU_MODELS.contains(&cputype.as_str()) && !BUILTIN_MODELS.contains(&cputype.as_str()) {
        return Err(format!(
            "Built-in cputype '{cputype}' is not defined (missing 'custom-' prefix?)\n"
        ));
    }
    if let Some(flags) = parsed.get("flags").filter(|f| !f.is_empty()) {
        let allowed = flags.split(';').all(|flag| {
            flag.strip_prefix(['+', '-'])
                .is_some_and(|name| VM_FLAGS.contains(&name))
        });
        if !allowed {
            return Err(format!(
                "VM-specific CPU flags must be a subset of: {}\n",
                VM_FLAGS.join(", ")
            ));
        }
    }
    if parsed.contains_key("reported-model") {
        return Err("Property 'reported-model' not allowed in VM-specific CPU config.\n".into());
    }
    Ok(())
}

/// `parse_phys_bits`: an integer from 8 to 64, or `host`.
pub(super) fn check_phys_bits(value: &str) -> Result<(), String> {
    let ok = value == "host"
        || (matches!(value.len(), 1 | 2)
            && value.bytes().all(|b| b.is_ascii_digit())
            && value
                .parse::<u32>()
                .is_ok_and(|bits| (8..=64).contains(&bits)));
    if ok {
        Ok(())
    } else {
        Err("value must be an integer between 8 and 64 or 'host'\n".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn models_flags_and_reported_model() {
        for model in [
            "host",
            "x86-64-v2-AES",
            "kvm64",
            "EPYC-Rome",
            "cortex-a72",
            "max",
        ] {
            assert_eq!(
                validate_vm_cpu_conf(&parsed(&[("cputype", model)])),
                Ok(()),
                "{model}"
            );
        }
        let unknown = validate_vm_cpu_conf(&parsed(&[("cputype", "Zen9")])).unwrap_err();
        assert!(unknown.contains("missing 'custom-' prefix"), "{unknown}");
        let flags = parsed(&[("cputype", "host"), ("flags", "+aes;-pcid")]);
        assert_eq!(validate_vm_cpu_conf(&flags), Ok(()));
        let avx = parsed(&[("cputype", "host"), ("flags", "+avx2")]);
        assert!(
            validate_vm_cpu_conf(&avx)
                .unwrap_err()
                .starts_with("VM-specific CPU flags")
        );
        assert_eq!(check_phys_bits("host"), Ok(()));
        assert!(check_phys_bits("7").is_err() && check_phys_bits("065").is_err());
    }
}
