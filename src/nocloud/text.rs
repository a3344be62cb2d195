//! The text rules every seed file shares: DNS names, and YAML scalars quoted so that YAML 1.1
//! (cloud-init's PyYAML) and 1.2 read them the same.

/// RFC 1123 host names (and DNS names generally): labels of 1 to 63 letters, digits and `-`,
/// not starting or ending with `-`, joined by `.`, at most 253 characters.
pub(super) fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A YAML double-quoted scalar, which reads the same in YAML 1.1 (cloud-init's PyYAML) and 1.2:
/// no `yes`, `0644` or `1:30` surprises. Whatever is not YAML-printable is escaped.
pub(super) fn yaml_quoted(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            // YAML 1.1 5.1 c-printable, less the line breaks and tab escaped above.
            ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' => {
                quoted.push(c);
            }
            c if u32::from(c) >= 0x10000 => quoted.push(c),
            c => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_quoting_escapes_what_yaml_would_read_otherwise() {
        assert_eq!(yaml_quoted("yes"), "\"yes\"");
        assert_eq!(yaml_quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(yaml_quoted("a\nb\tc\u{7}"), "\"a\\nb\\tc\\u0007\"");
        assert_eq!(yaml_quoted("\u{fffe}é😀"), "\"\\ufffeé😀\"");
    }
}
