//! What a YAML-level problem means to the person who wrote the file: serde-saphyr's and its
//! parser's own words ("set DuplicateKeyPolicy in Options", "use from_str_multiple", "expected
//! mapping start") say what the library wanted; these say what the user did and what is allowed,
//! and move the place where the library's is off (a tab is reported on the line before it).

use serde_saphyr::Error as E;

/// A problem said for a user: message, what is allowed, and the place when it is not the
/// library's (1-based line and column).
pub(crate) struct Said {
    pub(crate) message: String,
    pub(crate) allowed: String,
    pub(crate) place: Option<(u64, u64)>,
}

fn said(message: impl Into<String>, allowed: impl Into<String>) -> Said {
    Said {
        message: message.into(),
        allowed: allowed.into(),
        place: None,
    }
}

/// The user's words for `err`, found at `line`:`column` of `text` under the field `path`;
/// `None` when the library's message is kept.
pub(crate) fn for_user(err: &E, text: &str, path: &str, line: u64, column: u64) -> Option<Said> {
    let library = err.without_snippet().to_string();
    match err.without_snippet() {
        E::DuplicateMappingKey { key, .. } => {
            let key = key.clone().unwrap_or_else(|| "this key".to_string());
            let first = first_occurrence(text, line, column, &key);
            let name = path
                .rsplit('.')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or(&key);
            let message = match first {
                Some(first) => format!("`{name}` is declared twice (lines {first} and {line})"),
                None => format!("`{name}` is declared twice"),
            };
            Some(said(
                message,
                "each key once in a mapping: merge the two entries, or rename one",
            ))
        }
        E::MultipleDocuments { .. } => Some(said(
            format!(
                "a spec is one YAML document; found {}",
                count_documents(text).max(2)
            ),
            "a single document: remove the `---` (or `...`) that starts another, or split the file",
        )),
        E::UnknownAnchor { .. } => Some(said(
            "this alias (`*name`) refers to an anchor that is not defined before it",
            "an alias `*name` after an anchor `&name` on a value above it",
        )),
        E::Budget { .. } => Some(said(
            "the file expands to too many nodes (aliases repeated inside aliases)",
            "aliases that do not multiply: a spec of ordinary size",
        )),
        E::Eof { .. } => Some(said(
            "the file ends in the middle of a value",
            "a complete YAML document",
        )),
        E::Unexpected { expected, .. } => {
            let found = found_at(text, line, column);
            let wanted = match *expected {
                e if e.contains("mapping") => "a mapping",
                e if e.contains("sequence") => "a list",
                e if e.contains("string") || e.contains("scalar") => "a single value",
                _ => return None,
            };
            Some(said(
                format!("must be {wanted}, found {found}"),
                format!("{wanted} here"),
            ))
        }
        _ => parser_message(&library, text, line),
    }
}

/// The YAML parser's own problems, known by their wording.
fn parser_message(library: &str, text: &str, line: u64) -> Option<Said> {
    if library.contains("tab") {
        let (tab_line, tab_column) = first_tab_from(text, line)?;
        return Some(Said {
            message: "a tab character where YAML needs spaces".to_string(),
            allowed: "spaces for indentation and after `:`; YAML forbids tabs there".to_string(),
            place: Some((tab_line, tab_column)),
        });
    }
    if library.contains("unclosed quote") || library.contains("found unexpected end of stream") {
        return Some(said(
            "a quoted string is not closed",
            "the same quote (`\"` or `'`) at the end of the value",
        ));
    }
    if let Some(bracket) = ["'['", "'{'"].iter().find(|b| library.contains(*b)) {
        let closing = if *bracket == "'['" { "]" } else { "}" };
        return Some(said(
            format!("a `{}` is not closed", bracket.trim_matches('\'')),
            format!("a `{closing}` at the end of the flow collection"),
        ));
    }
    if library.contains("simple key expected ':'")
        || library.contains("could not find expected ':'")
    {
        return Some(said(
            "this line is neither `key: value` nor a list item, or it is indented wrongly",
            "`key: value`, indented under its parent mapping by spaces",
        ));
    }
    if library.contains("mapping values are not allowed") {
        return Some(said(
            "a `: ` inside a value that is not quoted, or a key indented wrongly",
            "quotes around a value holding `: `, or the key under its parent",
        ));
    }
    if library.contains("did not find expected") || library.contains("indentation") {
        return Some(said(
            "the indentation does not match the lines around it",
            "keys of one mapping at the same column, children further in, spaces only",
        ));
    }
    None
}

/// Where the key `key` repeated at `line` was first declared: the nearest line above with the
/// same key at the same column, before a line less indented (the end of the mapping).
fn first_occurrence(text: &str, line: u64, column: u64, key: &str) -> Option<u64> {
    let lines: Vec<&str> = text.lines().collect();
    let at = usize::try_from(line).ok()?.checked_sub(1)?;
    let indent = usize::try_from(column).ok()?.checked_sub(1)?;
    for (idx, above) in lines.get(..at)?.iter().enumerate().rev() {
        let trimmed = above.trim_start();
        let its_indent = above.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let name = trimmed
            .split_once(':')
            .map(|(k, _)| k.trim().trim_matches(['"', '\'']));
        if its_indent == indent && name == Some(key) {
            return Some(idx as u64 + 1);
        }
        if its_indent < indent {
            break;
        }
    }
    None
}

/// How many documents a YAML stream holds: one before the first `---` when content precedes it,
/// and one after each `---`.
fn count_documents(text: &str) -> usize {
    let mut n_docs = 0;
    let mut open = false;
    for line in text.lines() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            n_docs += 1;
            open = true;
        } else if trimmed == "..." {
            open = false;
        } else if !open
            && !trimmed.is_empty()
            && !trimmed.starts_with('#')
            && !trimmed.starts_with('%')
        {
            n_docs += 1;
            open = true;
        }
    }
    n_docs
}

/// What the text at a place starts: a list, a mapping or a value.
fn found_at(text: &str, line: u64, column: u64) -> &'static str {
    let rest = usize::try_from(line)
        .ok()
        .and_then(|l| l.checked_sub(1))
        .and_then(|l| text.lines().nth(l))
        .map(|l| {
            let skip = usize::try_from(column.saturating_sub(1)).unwrap_or(0);
            l.chars().skip(skip).collect::<String>()
        })
        .unwrap_or_default();
    match rest.trim_start().chars().next() {
        Some('[') | Some('-') => "a list",
        Some('{') => "a mapping",
        Some(_) => "a single value",
        None => "nothing",
    }
}

/// The first tab on `line` or after it (1-based line and column).
fn first_tab_from(text: &str, line: u64) -> Option<(u64, u64)> {
    let start = usize::try_from(line).ok()?.saturating_sub(1);
    text.lines().enumerate().skip(start).find_map(|(idx, l)| {
        l.chars()
            .position(|c| c == '\t')
            .map(|col| (idx as u64 + 1, col as u64 + 1))
    })
}

#[cfg(test)]
mod tests {
    use super::{count_documents, first_occurrence, first_tab_from};

    #[test]
    fn places_are_found_in_the_text() {
        let text = "clones:\n  web:\n    vmid: 1\n  db:\n    vmid: 2\n  web:\n";
        assert_eq!(first_occurrence(text, 6, 3, "web"), Some(2));
        assert_eq!(count_documents("a: 1\n---\nb: 2\n"), 2);
        assert_eq!(count_documents("---\na: 1\n...\n---\nb: 2\n"), 2);
        assert_eq!(first_tab_from("a:\n  b: 1\n\tc: 2\n", 2), Some((3, 1)));
    }
}
