//! The README's console blocks are run, so the tour can never drift from the program.
//!
//! Every ```` ```console ```` block of `README.md` runs: each `$ proxfleet …` line is a command,
//! run by the real binary in a sandbox (a temporary directory holding a copy of `examples/`,
//! where `--sim` keeps its state), with standard error merged into standard output as a
//! terminal shows them; the lines up to the next `$` are what it must print. In the expected
//! text a line `…` stands for any number of lines, and `[..]` for any text within a line
//! (UPIDs, durations, digests). Blocks run in file order and share one sandbox, as a reader
//! following the tour does; an HTML comment just before a block adjusts that:
//!
//! - `<!-- doc-test: fresh -->`: a new sandbox for this block and those after it;
//! - `<!-- doc-test: edit FILE: OLD => NEW -->`: replace text in a sandbox file first (`\n` is
//!   a line break; several directives may share a comment, separated by ` ;; `);
//! - `<!-- doc-test: write FILE from PATH -->`: copy a file of the repository into the sandbox;
//! - `<!-- doc-test: run COMMAND -->`: run a step the block does not show (output unchecked);
//! - `<!-- doc-test: stdin TEXT after PROMPT -->`: what the commands read (a prompt's answer),
//!   shown after `PROMPT` as a terminal echoes it;
//! - `<!-- doc-test: skip: REASON -->`: not run, for a reason the reader can see in the source
//!   (an interactive Ctrl-C, a real cluster).
//!
//! The alternative crates (trycmd, snapbox) run one command per file or need the commands in
//! separate `.toml`/`.trycmd` files; the README's tour is a sequence with edits between its
//! commands, which this small runner says in the README itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::common::root;

/// One console block and what precedes it.
#[derive(Debug)]
struct Block {
    /// 1-based line of the ```` ```console ```` fence.
    line: usize,
    directives: Vec<String>,
    /// `(command, expected lines)`.
    commands: Vec<(String, Vec<String>)>,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    let mut idx = 0;
    while idx < lines.len() {
        if lines[idx].trim() != "```console" {
            idx += 1;
            continue;
        }
        let fence = idx;
        // Directives: the HTML comments on the lines just before the fence.
        let mut comments = Vec::new();
        let mut back = fence;
        while back > 0 {
            let above = lines[back - 1].trim();
            if let Some(body) = above
                .strip_prefix("<!-- doc-test:")
                .and_then(|b| b.strip_suffix("-->"))
            {
                comments.push(body);
                back -= 1;
            } else {
                break;
            }
        }
        let directives: Vec<String> = comments
            .iter()
            .rev()
            .flat_map(|body| body.split(" ;; ").map(|d| d.trim().to_string()))
            .collect();
        let mut commands: Vec<(String, Vec<String>)> = Vec::new();
        idx += 1;
        while idx < lines.len() && lines[idx].trim() != "```" {
            let line = lines[idx];
            if let Some(command) = line.strip_prefix("$ ") {
                commands.push((command.to_string(), Vec::new()));
            } else if let Some((_, expected)) = commands.last_mut() {
                expected.push(line.trim_end().to_string());
            } else {
                // Output with no command: shown for illustration; must be marked.
                commands.push((String::new(), vec![line.to_string()]));
            }
            idx += 1;
        }
        out.push(Block {
            line: fence + 1,
            directives,
            commands,
        });
        idx += 1;
    }
    out
}

/// Whether `actual` matches `expected`, where `[..]` stands for any text.
fn line_matches(expected: &str, actual: &str) -> bool {
    let pieces: Vec<&str> = expected.split("[..]").collect();
    if pieces.len() == 1 {
        return expected == actual;
    }
    let Some(mut rest) = actual.strip_prefix(pieces[0]) else {
        return false;
    };
    for (idx, piece) in pieces.iter().enumerate().skip(1) {
        if idx + 1 == pieces.len() {
            return rest.ends_with(piece);
        }
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `actual` lines match `expected` lines, where a line `…` stands for any lines.
fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "…" => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, tail)| line_matches(first, line) && lines_match(rest, tail)),
    }
}

/// Split a command line into words, with single and double quotes.
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in command.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (_, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("sandbox directory");
    for entry in std::fs::read_dir(from)
        .expect("readable")
        .filter_map(Result::ok)
    {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&root().join("examples"), &dir.path().join("examples"));
    dir
}

/// Run one command line in `dir`, standard error merged into standard output in order.
fn run(dir: &Path, command: &str, stdin: &str) -> String {
    let words = words(command);
    assert_eq!(
        words.first().map(String::as_str),
        Some("proxfleet"),
        "only proxfleet commands run: {command}"
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&1")
        .arg(env!("CARGO_BIN_EXE_proxfleet"))
        .args(&words[1..])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env_remove("CLICOLOR_FORCE")
        .env_remove("PROXMOX_VE_ENDPOINT")
        .env_remove("PROXMOX_VE_API_TOKEN")
        .env_remove("PROXFLEET_PROFILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh runs");
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write;
        let _ = input.write_all(stdin.as_bytes());
    }
    let output = child.wait_with_output().expect("the command ends");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `stdin` is what the commands read and, when they prompt, the prompt after which a terminal
/// would echo it.
fn apply_directive(
    dir: &mut tempfile::TempDir,
    directive: &str,
    stdin: &mut (String, Option<String>),
) {
    if directive == "fresh" {
        *dir = sandbox();
    } else if let Some(rest) = directive.strip_prefix("edit ") {
        let (file, change) = rest.split_once(": ").expect("edit FILE: OLD => NEW");
        let (old, new) = change.split_once(" =>").expect("edit FILE: OLD => NEW");
        let new = new.strip_prefix(' ').unwrap_or(new);
        let (old, new) = (old.replace("\\n", "\n"), new.replace("\\n", "\n"));
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(&old), "edit {file}: `{old}` is not in it");
        std::fs::write(&path, text.replacen(&old, &new, 1)).expect("write");
    } else if let Some(rest) = directive.strip_prefix("write ") {
        let (file, from) = rest.split_once(" from ").expect("write FILE from PATH");
        let target: PathBuf = dir.path().join(file);
        std::fs::copy(root().join(from), target).expect("copy");
    } else if let Some(command) = directive.strip_prefix("run ") {
        // A step of the story the block does not show (its output is not checked).
        run(dir.path(), command, "");
    } else if let Some(text) = directive.strip_prefix("stdin ") {
        // `stdin TEXT after PROMPT`: what is typed, echoed after the prompt as a terminal does.
        let (text, prompt) = match text.split_once(" after ") {
            Some((text, prompt)) => (text, Some(format!("{} ", prompt.trim()))),
            None => (text, None),
        };
        *stdin = (format!("{}\n", text.replace("\\n", "\n")), prompt);
    } else {
        panic!("unknown doc-test directive `{directive}`");
    }
}

fn check_markdown(name: &str) -> usize {
    let markdown = std::fs::read_to_string(root().join(name)).expect("markdown");
    let mut dir = sandbox();
    let mut n_run = 0;
    let mut failures = Vec::new();
    for block in blocks(&markdown) {
        if let Some(reason) = block
            .directives
            .iter()
            .find_map(|d| d.strip_prefix("skip:"))
        {
            assert!(
                !reason.trim().is_empty(),
                "{name}:{}: skip says why",
                block.line
            );
            continue;
        }
        let mut stdin = (String::new(), None);
        for directive in &block.directives {
            apply_directive(&mut dir, directive, &mut stdin);
        }
        for (command, expected) in &block.commands {
            assert!(
                !command.is_empty(),
                "{name}:{}: a console block without a `$` command needs `<!-- doc-test: skip: why -->`",
                block.line
            );
            let mut actual = run(dir.path(), command, &stdin.0);
            if let Some(prompt) = &stdin.1 {
                // A terminal echoes what is typed after the prompt.
                actual = actual.replacen(prompt.as_str(), &format!("{prompt}{}", stdin.0), 1);
            }
            let mut actual_lines: Vec<&str> = actual.lines().map(str::trim_end).collect();
            while actual_lines.last().is_some_and(|l| l.is_empty()) {
                actual_lines.pop();
            }
            let mut expected = expected.clone();
            while expected.last().is_some_and(|l| l.is_empty()) {
                expected.pop();
            }
            n_run += 1;
            if !lines_match(&expected, &actual_lines) {
                failures.push(format!(
                    "{name}:{}: `$ {command}` printed:\n{actual}\n--- but the document says:\n{}\n",
                    block.line,
                    expected.join("\n")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    n_run
}

#[test]
fn every_console_block_of_the_readme_is_what_the_program_prints() {
    let n_run = check_markdown("README.md");
    assert!(n_run >= 10, "only {n_run} README commands ran");
}

#[test]
fn every_console_block_of_the_json_docs_is_what_the_program_prints() {
    let n_run = check_markdown("docs/JSON.md");
    assert!(n_run >= 4, "only {n_run} docs/JSON.md commands ran");
}

#[test]
fn the_matcher_takes_ellipses_and_wildcards() {
    let expected = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert!(lines_match(
        &expected(&["a", "…", "d"]),
        &["a", "b", "c", "d"]
    ));
    assert!(lines_match(&expected(&["a", "…"]), &["a"]));
    assert!(!lines_match(&expected(&["a", "d"]), &["a", "b", "d"]));
    assert!(lines_match(&expected(&["x [..] z"]), &["x anything z"]));
    assert!(!lines_match(&expected(&["x [..] z"]), &["x anything y"]));
    assert!(line_matches("[..]:[..]", "UPID:pve1"));
    assert_eq!(
        words("proxfleet --sim plan -f 'a b.yaml'"),
        ["proxfleet", "--sim", "plan", "-f", "a b.yaml"]
    );
}
