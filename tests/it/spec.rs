//! Spec diagnostics and the JSON Schema: every invalid fixture's exact message is a snapshot,
//! every example loads, and the checked-in schema is the one the code generates.

use std::path::Path;

use crate::common::*;

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_invalid_fixture_fails_with_its_exact_message() {
    let dir = root().join("tests/fixtures/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 100,
        "the catalogue has its cases: {}",
        files.len()
    );
    // Problems of the whole document have no field to name.
    let whole_document = ["yaml_two_documents", "yaml_top_level_list"];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        // Load with the relative name so messages do not depend on the checkout's location.
        let started = std::time::Instant::now();
        let err = proxfleet::spec::load_str(&text, Path::new(&relative(&file)))
            .expect_err(&relative(&file));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{name}: {:?}",
            started.elapsed()
        );
        assert!(!err.diagnostics().is_empty());
        for diag in err.diagnostics() {
            assert!(
                diag.line > 0 && diag.column > 0,
                "{}: every diagnostic has a line and column: {diag:?}",
                relative(&file)
            );
            assert!(
                diag.allowed.is_some(),
                "{name}: every diagnostic says what is allowed: {diag:?}"
            );
            assert!(
                !diag.path.is_empty() || whole_document.contains(&name.as_str()),
                "{name}: every diagnostic names its field: {diag:?}"
            );
        }
        snapshot_settings()
            .bind(|| insta::assert_snapshot!(format!("invalid_{name}"), err.to_string()));
    }
}

#[test]
fn every_invalid_fixture_makes_validate_exit_1_with_file_line_and_column() {
    let dir = root().join("tests/fixtures/invalid");
    let mut n_fixtures = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_proxfleet"))
            .args(["validate", "--file"])
            .arg(&path)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}: {stderr}",
            path.display()
        );
        let located = format!("  --> {}:", path.display());
        assert!(stderr.contains(&located), "{}: {stderr}", path.display());
        assert!(
            stderr.contains("= allowed: "),
            "{}: {stderr}",
            path.display()
        );
        n_fixtures += 1;
    }
    assert!(n_fixtures >= 100, "{n_fixtures}");
}

#[test]
fn ten_independent_mistakes_are_reported_together() {
    let path = root().join("tests/fixtures/invalid/ten_independent_mistakes.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let err = proxfleet::spec::load_str(&text, Path::new("ten.yaml")).unwrap_err();
    let lines: std::collections::BTreeSet<u64> = err.diagnostics().iter().map(|d| d.line).collect();
    assert_eq!(err.diagnostics().len(), 10, "{err}");
    assert_eq!(lines.len(), 10, "one problem per mistake: {err}");
}

#[test]
fn unknown_keys_bad_enums_and_bad_types_are_reported_in_one_pass() {
    let path = root().join("tests/fixtures/invalid/structural_three_at_once.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let err = proxfleet::spec::load_str(&text, Path::new("three.yaml")).unwrap_err();
    let said: Vec<String> = err
        .diagnostics()
        .iter()
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    assert_eq!(
        said,
        vec![
            "templates.base.bios: unknown value `uefi`",
            "templates.base.cores: must be a whole number, found a string",
            "clones.web.memroy: unknown field `memroy` (did you mean `memory`?)",
        ]
    );
}

#[test]
fn a_group_s_repeated_problem_is_one_line_with_ranges() {
    let path = root().join("tests/fixtures/invalid/group_vmids_below_100.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let err = proxfleet::spec::load_str(&text, Path::new("group.yaml")).unwrap_err();
    let messages: Vec<&str> = err
        .diagnostics()
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        messages,
        vec!["clones web-1…web-5 (5 clones): vmid 50…54 is out of range"]
    );
}

#[test]
fn sixteen_groups_of_a_thousand_clones_with_mistakes_validate_quickly() {
    let mut text = std::fs::read_to_string(example("quickstart.yaml")).unwrap();
    let cut = text.find("\nclones:").unwrap_or(text.len());
    text.truncate(cut);
    text.push_str("\nclone_groups:\n");
    for group_idx in 0..16 {
        let first = 10_000 + group_idx * 1000;
        text.push_str(&format!(
            "  g{group_idx}:\n    count: 1000\n    first_vmid: {first}\n    template: nope\n"
        ));
    }
    let started = std::time::Instant::now();
    let err = proxfleet::spec::load_str(&text, Path::new("fleet.yaml")).unwrap_err();
    let rendered = err.to_string();
    // Debug builds are slow; the figure for release builds is in `cargo bench --bench validate`.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.diagnostics().len(), 16, "one per group: {rendered}");
}

#[test]
fn pool_ids_follow_pve_poolid() {
    let text = |pool: &str| {
        quickstart_text().replacen(
            "    template: debian-12-base\n",
            &format!("    template: debian-12-base\n    pool: \"{pool}\"\n"),
            1,
        )
    };
    for ok in ["a.b", "web", "team/web", "a/b/c", "x_y-z.1"] {
        let loaded = proxfleet::spec::load_str(&text(ok), Path::new("pool.yaml"));
        assert!(
            loaded.is_ok(),
            "{ok}: {:?}",
            loaded.err().map(|e| e.to_string())
        );
    }
    for bad in ["a/b/c/d", "web pool", "a//b", "", "/a", "pool:1", "ü"] {
        let loaded = proxfleet::spec::load_str(&text(bad), Path::new("pool.yaml"));
        assert!(loaded.is_err(), "{bad} is refused");
    }
}

#[test]
fn every_example_is_valid() {
    let mut n_examples = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let loaded =
                proxfleet::spec::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!loaded.spec.templates.is_empty(), "{}", path.display());
            n_examples += 1;
        }
    }
    assert!(n_examples >= 1);
}

#[test]
fn checked_in_schema_is_current() {
    let generated = proxfleet::spec::json_schema();
    let path = root().join("schema/proxfleet.schema.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schema/proxfleet.schema.json is stale: run `cargo run -- schema > schema/proxfleet.schema.json`"
    );
}

#[test]
fn examples_point_editors_at_the_schema() {
    let first = quickstart_text()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        first,
        "# yaml-language-server: $schema=../schema/proxfleet.schema.json"
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = "clones:\n  web_1:\n    vmid: 5\n    template: nope\n";
    let err = proxfleet::spec::load_str(text, Path::new("many.yaml")).unwrap_err();
    let paths: Vec<&str> = err.diagnostics().iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["clones.web_1", "clones.web_1.vmid", "clones.web_1.template"]
    );
}

mod fuzz {
    use std::path::Path;

    use proptest::prelude::*;

    use crate::common::*;

    /// Mutations of a valid spec: cut it, duplicate a line, swap characters, insert YAML-ish
    /// noise. The loader must answer with a spec or an error, never a panic.
    fn mutate(text: &str, cut: usize, line: usize, noise: &str, flip: usize) -> String {
        let lines: Vec<&str> = text.lines().collect();
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        if !out.is_empty() {
            let idx = line % out.len();
            let dup = out[idx].clone();
            out.insert(idx, format!("{dup}{noise}"));
        }
        let mut joined = out.join("\n");
        if !joined.is_empty() {
            let mut at = flip % joined.len();
            while !joined.is_char_boundary(at) {
                at -= 1;
            }
            joined.insert_str(at, noise);
        }
        let mut end = cut % (joined.len() + 1);
        while !joined.is_char_boundary(end) {
            end -= 1;
        }
        joined[..end].to_string()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn mutated_specs_never_panic(cut in 0usize..4000, line in 0usize..200, flip in 0usize..4000, noise in prop::sample::select(vec![
            "", ":", "- ", "{", "}", "[", "]", "&a", "*a", "<<: *a", "!!binary", "\t", "'", "\"", "\n  x: 1", "vmid: -1", "count: 99999999999999999999", "  ", "#", "~", "é", "\u{0}",
        ])) {
            let text = mutate(&quickstart_text(), cut, line, noise, flip);
            let _ = proxfleet::spec::load_str(&text, Path::new("fuzz.yaml"));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = proxfleet::spec::load_str(&text, Path::new("fuzz.yaml"));
        }
    }
}

/// The YAML documents as JSON values, for the JSON Schema validator.
fn yaml_as_json(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).expect("YAML parses as a generic value")
}

#[test]
fn schema_accepts_every_example_and_agrees_with_the_loader_on_type_errors() {
    let schema: serde_json::Value = serde_json::from_str(&proxfleet::spec::json_schema()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue; // files the examples reference (cloud-init data), not specs
        }
        let doc = yaml_as_json(&std::fs::read_to_string(&path).unwrap());
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
    // Type-level mistakes: the schema and the loader both reject them.
    let type_level = [
        "unknown_image_field",
        "unknown_clone_field",
        "unknown_top_level_key",
        "bad_bios_enum",
        "vmid_not_a_number",
        "group_count_zero",
        "template_vmid_out_of_range",
        "vlan_out_of_range",
    ];
    for name in type_level {
        let path = root().join(format!("tests/fixtures/invalid/{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = yaml_as_json(&text);
        assert!(!validator.is_valid(&doc), "the schema should reject {name}");
        assert!(
            proxfleet::spec::load_str(&text, &path).is_err(),
            "the loader should reject {name}"
        );
    }
}

#[test]
fn raw_pci_host_ids_and_literal_passwords_are_accepted_with_a_warning() {
    let text = quickstart_text()
        .replace(
            "    agent: true\n",
            "    agent: true\n    pci:\n      - host: 0000:01:00.0\n        pcie: true\n",
        )
        .replace(
            "      user: debian\n",
            "      user: debian\n      password: hunter2\n",
        );
    let loaded = proxfleet::spec::load_str(&text, Path::new("warn.yaml")).expect("valid");
    let warnings: Vec<String> = loaded
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    assert_eq!(
        warnings,
        vec![
            "templates.debian-12-base.cloud_init.password: a literal password is stored in the spec; use `env:NAME` or `file:PATH` instead",
            "templates.debian-12-base.pci[0].host: raw PCI host ids are allowed for root@pam only: API tokens cannot use them; create a resource mapping and use `mapping` instead",
        ]
    );
    assert!(warnings.iter().all(|w| !w.contains("hunter2")));
    assert!(
        !format!("{:?}", loaded.spec).contains("hunter2"),
        "Debug of the spec redacts the password"
    );
}

#[test]
fn clone_groups_expand_with_counting_names_vmids_addresses_and_nodes() {
    let loaded = proxfleet::spec::load(&example("cluster.yaml")).unwrap();
    let app: Vec<_> = loaded
        .spec
        .clones
        .iter()
        .filter(|c| c.group.as_deref() == Some("app"))
        .collect();
    assert_eq!(app.len(), 24);
    let summary: Vec<(String, u32, String)> = app
        .iter()
        .take(4)
        .map(|c| (c.name.clone(), c.vmid.get(), c.node.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("app-1".into(), 1001, "pve1".into()),
            ("app-2".into(), 1002, "pve2".into()),
            ("app-3".into(), 1003, "pve3".into()),
            ("app-4".into(), 1004, "pve1".into()),
        ]
    );
    let memory = |clone: &proxfleet::spec::CloneVm| {
        let memory = &clone.settings.memory_mib;
        (memory.value, memory.origin.layer.to_string())
    };
    assert_eq!(
        memory(app[0]),
        (4096, "clone_groups.app.overrides.app-1".to_string()),
        "override for app-1 only"
    );
    assert_eq!(
        memory(app[1]).1,
        "templates.debian-12-app",
        "the others inherit the template's memory"
    );
    let rows = &loaded.explanations["app-1"];
    let memory = rows.iter().find(|r| r.field == "memory").unwrap();
    assert_eq!(
        (memory.value.as_str(), memory.source.as_str()),
        ("4096 MiB", "clone_groups.app.overrides.app-1")
    );
    let cores = rows.iter().find(|r| r.field == "cores").unwrap();
    assert_eq!(
        (cores.value.as_str(), cores.source.as_str()),
        ("2", "templates.debian-12-app")
    );
}

#[test]
fn every_schema_field_has_a_description_and_an_example() {
    let schema: serde_json::Value = serde_json::from_str(&proxfleet::spec::json_schema()).unwrap();
    let mut missing = Vec::new();
    let mut n_fields = 0;
    let objects = schema["$defs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, def)| (name.clone(), def))
        .chain(std::iter::once(("root".to_string(), &schema)));
    for (name, def) in objects {
        for (field, prop) in def["properties"].as_object().into_iter().flatten() {
            n_fields += 1;
            if name != "root" && prop.get("examples").is_none() {
                missing.push(format!("{name}.{field}: example"));
            }
            if prop.get("description").is_none() {
                missing.push(format!("{name}.{field}: description"));
            }
        }
    }
    assert!(n_fields > 100, "{n_fields}");
    assert_eq!(missing, Vec::<String>::new());
}

/// Every subschema of `schema` that has `examples`, with its JSON pointer.
fn subschemas_with_examples<'a>(
    value: &'a serde_json::Value,
    pointer: String,
    found: &mut Vec<(String, &'a serde_json::Value)>,
) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("examples").is_some_and(serde_json::Value::is_array) {
                found.push((pointer.clone(), value));
            }
            for (key, child) in map {
                // `examples` and `default` hold instances, not schemas.
                if key != "examples" && key != "default" {
                    subschemas_with_examples(child, format!("{pointer}/{key}"), found);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (idx, child) in items.iter().enumerate() {
                subschemas_with_examples(child, format!("{pointer}/{idx}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_schema_example_is_valid_against_its_own_subschema() {
    let schema: serde_json::Value = serde_json::from_str(&proxfleet::spec::json_schema()).unwrap();
    let mut found = Vec::new();
    subschemas_with_examples(&schema, String::new(), &mut found);
    assert!(
        found.len() >= 50,
        "the schema has its examples: {}",
        found.len()
    );
    let mut failures = Vec::new();
    for (pointer, subschema) in found {
        // The subschema alone, with the root's definitions so its `$ref`s resolve.
        let mut standalone = subschema.clone();
        if let (Some(map), Some(defs)) = (standalone.as_object_mut(), schema.get("$defs")) {
            map.insert("$defs".to_string(), defs.clone());
            if let Some(dialect) = schema.get("$schema") {
                map.insert("$schema".to_string(), dialect.clone());
            }
        }
        let validator = jsonschema::validator_for(&standalone)
            .unwrap_or_else(|err| panic!("{pointer}: not a valid schema: {err}"));
        for example in subschema["examples"].as_array().into_iter().flatten() {
            for error in validator.iter_errors(example) {
                failures.push(format!("{pointer}: example {example}: {error}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_schema_has_no_null_default() {
    let text = proxfleet::spec::json_schema();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut stack = vec![(String::new(), &schema)];
    while let Some((pointer, value)) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                assert!(
                    !map.get("default").is_some_and(serde_json::Value::is_null),
                    "{pointer}: `\"default\": null` breaks yaml-language-server's completion"
                );
                stack.extend(map.iter().map(|(k, v)| (format!("{pointer}/{k}"), v)));
            }
            serde_json::Value::Array(items) => stack.extend(
                items
                    .iter()
                    .enumerate()
                    .map(|(idx, v)| (format!("{pointer}/{idx}"), v)),
            ),
            _ => {}
        }
    }
    let checked_in = std::fs::read_to_string(root().join("schema/proxfleet.schema.json")).unwrap();
    assert!(!checked_in.contains("\"default\": null"));
}

#[test]
fn the_schema_takes_bare_numbers_where_the_loader_does() {
    let schema: serde_json::Value = serde_json::from_str(&proxfleet::spec::json_schema()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let text = std::fs::read_to_string(example("quickstart.yaml")).unwrap();
    // Memory in MiB and a time-out in seconds.
    let with_number = text.replacen("memory: 2GiB", "memory: 2048", 1).replacen(
        "    cores: 2\n",
        "    cores: 2\n    wait_for_ip_timeout: 90\n",
        1,
    );
    assert!(
        !with_number.contains("memory: 2GiB") && with_number.contains("wait_for_ip_timeout: 90")
    );
    let path = example("quickstart.yaml");
    let loaded = proxfleet::spec::load_str(&with_number, &path).expect("the loader takes it");
    assert!(
        loaded
            .spec
            .templates
            .iter()
            .any(|template| template.memory_mib == 2048)
    );
    let errors: Vec<String> = validator
        .iter_errors(&yaml_as_json(&with_number))
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn the_schema_refuses_what_the_loader_refuses_by_range_pattern_or_enum() {
    let schema: serde_json::Value = serde_json::from_str(&proxfleet::spec::json_schema()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let fixtures = [
        "pool_nested_too_deep",
        "pool_with_a_space",
        "efi_storage_smuggles_an_option",
        "tpm_storage_is_not_an_id",
        "cloud_init_storage_smuggles_an_option",
        "storage_id_smuggles_an_option",
        "bad_machine_type",
        "unknown_ostype",
        "cores_zero",
        "sockets_out_of_range",
        "clone_cores_too_many",
        "description_too_long",
        "bridge_name_too_long",
        "bad_disk_size",
        "bad_ipv4",
        "bad_ipv6",
        "user_name_upper_case",
        "memory_too_small",
        "bad_wait_for_ip_timeout",
    ];
    let mut accepted = Vec::new();
    for name in fixtures {
        let path = root().join(format!("tests/fixtures/invalid/{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            proxfleet::spec::load_str(&text, &path).is_err(),
            "the loader refuses {name}"
        );
        if validator.is_valid(&yaml_as_json(&text)) {
            accepted.push(name);
        }
    }
    assert_eq!(
        accepted,
        Vec::<&str>::new(),
        "the schema should refuse these"
    );
}

#[test]
fn an_ipv6_gateway_outside_the_subnet_is_a_warning_unless_link_local() {
    let with_gateway = |gateway: &str| {
        quickstart_text().replacen(
            "      gateway: 192.0.2.1\n",
            &format!("      gateway: 192.0.2.1\n      ipv6: 2001:db8:1::11/64\n      gateway6: \"{gateway}\"\n"),
            1,
        )
    };
    let warnings = |gateway: &str| -> Vec<String> {
        proxfleet::spec::load_str(&with_gateway(gateway), Path::new("v6.yaml"))
            .expect("valid")
            .warnings
            .into_iter()
            .filter(|w| w.path.ends_with("gateway6"))
            .map(|w| w.message)
            .collect()
    };
    assert_eq!(
        warnings("2001:db8:2::1"),
        vec![
            "gateway 2001:db8:2::1 is outside 2001:db8:1::/64 and not link-local: the guest may not reach it"
        ]
    );
    assert_eq!(warnings("fe80::1"), Vec::<String>::new());
    assert_eq!(warnings("2001:db8:1::1"), Vec::<String>::new());
}
