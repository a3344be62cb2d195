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
    assert!(files.len() >= 10, "the catalogue has its cases");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Load with the relative name so messages do not depend on the checkout's location.
        let err = proxfleet::spec::load_str(&text, Path::new(&relative(&file)))
            .expect_err(&relative(&file));
        assert!(!err.diagnostics().is_empty());
        for diag in err.diagnostics() {
            assert!(
                diag.line > 0,
                "{}: every diagnostic has a line: {diag:?}",
                relative(&file)
            );
        }
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        snapshot_settings()
            .bind(|| insta::assert_snapshot!(format!("invalid_{name}"), err.to_string()));
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
