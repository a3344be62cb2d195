//! Repeated problems said once: the clones of a group share the group's lines, so one mistake
//! there is found once per clone ("vmid 50 is out of range", "vmid 51 …"). Problems at the same
//! place with the same words but for their numbers become one, its numbers as ranges and its
//! clones named first…last: "clones web-1…web-5: vmid 50…54 is out of range". One pass with a
//! hash map, so a hundred thousand problems cost no more than reading them.

use std::collections::HashMap;

use super::super::error::Diagnostic;

/// A problem's words cut into text and the numbers between it.
struct Cut {
    /// The text between numbers; one more piece than numbers.
    pieces: Vec<String>,
    numbers: Vec<u64>,
}

fn cut(message: &str) -> Cut {
    let mut pieces = vec![String::new()];
    let mut numbers = Vec::new();
    let mut digits = String::new();
    for c in message.chars().chain(std::iter::once('\u{0}')) {
        if c.is_ascii_digit() && digits.len() < 18 {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            match digits.parse::<u64>() {
                Ok(n) => {
                    numbers.push(n);
                    pieces.push(String::new());
                }
                Err(_) => pieces
                    .last_mut()
                    .into_iter()
                    .for_each(|p| p.push_str(&digits)),
            }
            digits.clear();
        }
        if c == '\u{0}' {
            break;
        }
        if c.is_ascii_digit() {
            digits.push(c);
        } else if let Some(piece) = pieces.last_mut() {
            piece.push(c);
        }
    }
    Cut { pieces, numbers }
}

/// What makes two problems the same one: place, field, allowed, and words without numbers.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    path: String,
    line: u64,
    column: u64,
    allowed: Option<String>,
    pieces: Vec<String>,
}

/// A merged problem so far: its first member, the numbers of its first and last members and
/// which of them all members share, and its clones (first, last, how many).
struct Members {
    first: Diagnostic,
    head: Vec<u64>,
    last: Vec<u64>,
    same: Vec<bool>,
    n_members: usize,
    subjects: Option<(String, String, usize)>,
}

impl Members {
    fn add(&mut self, numbers: Vec<u64>, subject: Option<String>) {
        for (slot, same) in self.same.iter_mut().enumerate() {
            *same &= numbers.get(slot) == self.head.get(slot);
        }
        self.last = numbers;
        self.n_members += 1;
        if let Some(name) = subject {
            match &mut self.subjects {
                Some((_, last, n)) => {
                    *last = name;
                    *n += 1;
                }
                None => self.subjects = Some((name.clone(), name, 1)),
            }
        }
    }
}

/// Problems (each with the clone it was found for, when it was one of a group's) with repeats
/// merged, in file order.
pub(super) fn collapse(found: Vec<(Diagnostic, Option<String>)>) -> Vec<Diagnostic> {
    let mut order: Vec<Key> = Vec::new();
    let mut groups: HashMap<Key, Members> = HashMap::new();
    for (diag, subject) in found {
        let Cut { pieces, numbers } = cut(&diag.message);
        let key = Key {
            path: diag.path.clone(),
            line: diag.line,
            column: diag.column,
            allowed: diag.allowed.clone(),
            pieces,
        };
        match groups.get_mut(&key) {
            Some(members) => members.add(numbers, subject),
            None => {
                let members = Members {
                    first: diag,
                    same: vec![true; numbers.len()],
                    head: numbers.clone(),
                    last: numbers,
                    n_members: 1,
                    subjects: subject.map(|name| (name.clone(), name, 1)),
                };
                order.push(Key {
                    path: key.path.clone(),
                    line: key.line,
                    column: key.column,
                    allowed: key.allowed.clone(),
                    pieces: key.pieces.clone(),
                });
                groups.insert(key, members);
            }
        }
    }
    let mut out: Vec<Diagnostic> = order
        .into_iter()
        .filter_map(|key| {
            let members = groups.remove(&key)?;
            Some(merged(&key.pieces, members))
        })
        .collect();
    out.sort_by_key(|d| (d.line, d.column));
    out
}

/// One problem for all its members: each number that differs as first…last.
fn merged(pieces: &[String], members: Members) -> Diagnostic {
    let Members {
        mut first,
        head,
        last,
        same,
        n_members,
        subjects,
    } = members;
    if n_members < 2 {
        if let Some((one, _, _)) = subjects {
            first.message = format!("clone {one}: {}", first.message);
        }
        return first;
    }
    let mut message = String::new();
    for (slot, piece) in pieces.iter().enumerate() {
        message.push_str(piece);
        match (head.get(slot), last.get(slot), same.get(slot)) {
            (Some(head), _, Some(true)) | (Some(head), None, _) => {
                message.push_str(&head.to_string())
            }
            (Some(head), Some(last), _) => message.push_str(&format!("{head}…{last}")),
            _ => {}
        }
    }
    first.message = match subjects {
        None => message,
        Some((one, _, 1)) => format!("clone {one}: {message}"),
        Some((head, last, n)) => format!("clones {head}…{last} ({n} clones): {message}"),
    };
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(message: &str) -> Diagnostic {
        Diagnostic {
            path: "clone_groups.web.vmid".to_string(),
            message: message.to_string(),
            allowed: Some("100..=999999999".to_string()),
            line: 4,
            column: 17,
            len: 2,
        }
    }

    #[test]
    fn a_group_s_repeated_problem_is_said_once_with_ranges() {
        let found = (1..=5)
            .map(|n| {
                (
                    diag(&format!("vmid {} is out of range", 49 + n)),
                    Some(format!("web-{n}")),
                )
            })
            .collect();
        let out = collapse(found);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].message,
            "clones web-1…web-5 (5 clones): vmid 50…54 is out of range"
        );
    }

    #[test]
    fn identical_problems_without_clones_are_said_once_and_others_kept() {
        let found = vec![
            (diag("unknown template `x`"), None),
            (diag("unknown template `x`"), None),
            (diag("vmid 5 is out of range"), None),
        ];
        let messages: Vec<String> = collapse(found).into_iter().map(|d| d.message).collect();
        assert_eq!(
            messages,
            vec!["unknown template `x`", "vmid 5 is out of range"]
        );
    }
}
