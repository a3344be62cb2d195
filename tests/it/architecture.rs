//! ARCHITECTURE.md's module map matches the tree: every module under `src/` is named in the
//! map (a top-level module by its path, `src/diff/` or `src/render.rs`; a file inside one by its
//! name or stem in backticks in that module's row), and every path the map names exists. A new
//! room without a line in the map fails here.

use std::collections::BTreeMap;
use std::path::Path;

use super::common::root;

/// The map's rows: the first cell's `src/…` paths → the whole row.
fn map_rows(architecture: &str) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    let start = architecture
        .find("## Module map")
        .expect("ARCHITECTURE.md has a `## Module map` section");
    let section = &architecture[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    for line in section[..end].lines().filter(|l| l.starts_with("| `src/")) {
        let first_cell = line.split('|').nth(1).unwrap_or_default();
        for path in first_cell.split('`').filter(|p| p.starts_with("src/")) {
            rows.insert(path.to_string(), line.to_string());
        }
    }
    rows
}

/// Every `.rs` file under `dir`, relative to the repository root.
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable src")
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root()).expect("under the root");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn the_module_map_names_every_module_and_only_modules_that_exist() {
    let architecture =
        std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let rows = map_rows(&architecture);
    assert!(rows.len() > 10, "the module map has rows: {rows:?}");
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);

    let mut missing = Vec::new();
    for file in &files {
        let inner = file.trim_start_matches("src/");
        let (top, rest) = match inner.split_once('/') {
            Some((dir, rest)) => (format!("src/{dir}/"), Some(rest)),
            None => (file.clone(), None),
        };
        let Some(row) = rows.get(&top) else {
            missing.push(format!("{file}: no row for `{top}`"));
            continue;
        };
        let Some(rest) = rest else { continue };
        if rest == "mod.rs" {
            continue;
        }
        // `client/tasks.rs` may be named `client/tasks.rs`, `tasks.rs`, `client/` or `tasks`.
        let stem = rest.trim_end_matches(".rs");
        let file_name = rest.rsplit('/').next().unwrap_or(rest);
        let file_stem = file_name.trim_end_matches(".rs");
        let parent = rest.rsplit_once('/').map(|(p, _)| format!("{p}/"));
        let named = [
            format!("`{rest}`"),
            format!("`{stem}`"),
            format!("`{file_name}`"),
            format!("`{file_stem}`"),
        ]
        .iter()
        .chain(parent.as_ref().map(|p| format!("`{p}`")).iter())
        .any(|needle| row.contains(needle.as_str()));
        if !named {
            missing.push(format!("{file}: not named in the row of `{top}`"));
        }
    }
    for path in rows.keys() {
        if !root().join(path).exists() {
            missing.push(format!("the map names {path}, which does not exist"));
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's module map and src/ disagree:\n  {}",
        missing.join("\n  ")
    );
}

/// The lines of `text` before its unit tests (`#[cfg(test)]`), which do not count toward a
/// room's size.
fn without_unit_tests(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .collect()
}

/// `(first line, length, name)` of every function in `lines`, found by its `fn` line and the
/// braces that close it (strings and comments holding braces are rare enough in this tree not
/// to matter; a miscount errs towards a longer function).
fn functions(lines: &[&str]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let signature = trimmed
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("const ")
            .trim_start_matches("async ");
        let Some(rest) = signature.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let mut depth = 0i64;
        let mut opened = false;
        for (offset, body_line) in lines[start..].iter().enumerate() {
            for c in body_line.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if !opened && body_line.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            if opened && depth <= 0 {
                out.push((start + 1, offset + 1, name.clone()));
                break;
            }
        }
    }
    out
}

#[test]
fn rooms_fit_their_contents() {
    const MAX_FILE_LINES: usize = 800;
    const MAX_FUNCTION_LINES: usize = 120;
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut oversized = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(root().join(file)).expect("readable");
        assert!(
            !text.contains("allow(clippy::too_many_arguments)"),
            "{file}: a function with too many arguments wants a struct"
        );
        // Unit-test files are tests, not rooms.
        if file.ends_with("/tests.rs") {
            continue;
        }
        let lines = without_unit_tests(&text);
        if lines.len() > MAX_FILE_LINES {
            oversized.push(format!("{file}: {} lines", lines.len()));
        }
        for (line, length, name) in functions(&lines) {
            if length > MAX_FUNCTION_LINES {
                oversized.push(format!("{file}:{line}: fn {name} is {length} lines"));
            }
        }
    }
    assert!(
        oversized.is_empty(),
        "rooms past {MAX_FILE_LINES} lines or functions past {MAX_FUNCTION_LINES}:\n  {}",
        oversized.join("\n  ")
    );
}

#[test]
fn the_function_counter_counts() {
    let source = "fn a() {\n    let x = {\n        1\n    };\n}\npub async fn b(\n    y: u32,\n) -> u32 {\n    y\n}\nfn c();\n";
    let lines: Vec<&str> = source.lines().collect();
    assert_eq!(
        functions(&lines),
        [(1, 5, "a".to_string()), (6, 5, "b".to_string())]
    );
}
