//! The INI layer: sections, `key = value` lines, comments and quotes, each with its line number.

/// One `key = value` line.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A `[name]` header and the entries under it.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// A parsed file: its sections in order, entries before any header, and syntax problems as
/// `(line, message)`.
#[derive(Debug, Default)]
pub(crate) struct Document {
    pub preamble: Vec<Entry>,
    pub sections: Vec<Section>,
    pub problems: Vec<(usize, String)>,
}

/// Drops a `#` or `;` comment, ignoring those inside single or double quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#' | ';') => return &line[..i],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

/// Removes one pair of matching surrounding quotes.
pub(crate) fn unquote(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

pub(crate) fn parse(text: &str) -> Document {
    let mut doc = Document::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = strip_comment(raw).trim();
        if content.is_empty() {
            continue;
        }
        if let Some(rest) = content.strip_prefix('[') {
            match rest.split_once(']') {
                Some((name, tail)) if tail.trim().is_empty() => {
                    let name = unquote(name.trim()).to_owned();
                    if name.is_empty() {
                        doc.problems.push((line, "empty section name '[]'".to_owned()));
                    }
                    doc.sections.push(Section { name, line, entries: Vec::new() });
                }
                Some(_) => {
                    doc.problems.push((line, format!("unexpected text after the section header in {content:?}")))
                }
                None => doc.problems.push((line, format!("section header {content:?} has no closing ']'"))),
            }
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            doc.problems.push((line, format!("expected 'key = value', got {content:?}")));
            continue;
        };
        let key = unquote(key.trim()).to_owned();
        if key.is_empty() {
            doc.problems.push((line, format!("missing key before '=' in {content:?}")));
            continue;
        }
        let entry = Entry { key, value: unquote(value.trim()).to_owned(), line };
        match doc.sections.last_mut() {
            Some(section) => section.entries.push(entry),
            None => doc.preamble.push(entry),
        }
    }
    doc
}

/// Expands `$VAR` and `${VAR}` using `env`. A `$` not followed by a name stays as it is.
pub(crate) fn interpolate(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => return Err(format!("unterminated '${{' in {value:?}")),
            }
        } else {
            let len = after
                .char_indices()
                .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
                .map_or(after.len(), |(i, _)| i);
            (&after[..len], len)
        };
        if name.is_empty() {
            if consumed == 2 {
                return Err(format!("empty variable name '${{}}' in {value:?}"));
            }
            out.push('$');
        } else {
            match env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable {name} is not set (used in {value:?})")),
            }
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_entries_comments_quotes() {
        let doc = parse(
            "# top\n\
             [pgmoneta]\n\
             host = * ; all interfaces\n\
             base_dir=\"/srv/with # hash\"\n\
             \x20 'quoted key' = 'v'\n\
             [ primary ]\n\
             port=5432#c\n",
        );
        assert!(doc.problems.is_empty(), "{:?}", doc.problems);
        assert_eq!(doc.sections.len(), 2);
        let main = &doc.sections[0];
        assert_eq!(
            (main.entries[0].key.as_str(), main.entries[0].value.as_str(), main.entries[0].line),
            ("host", "*", 3)
        );
        assert_eq!(main.entries[1].value, "/srv/with # hash");
        assert_eq!(main.entries[2].key, "quoted key");
        assert_eq!(doc.sections[1].name, "primary");
        assert_eq!(doc.sections[1].entries[0].value, "5432");
    }

    #[test]
    fn syntax_problems_carry_lines() {
        let doc = parse("[pgmoneta\nhost\n[]\n[a] x\n= 1\n");
        let lines: Vec<usize> = doc.problems.iter().map(|p| p.0).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn interpolation() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/pg".to_owned()),
            "X_1" => Some("x".to_owned()),
            _ => None,
        };
        assert_eq!(interpolate("$HOME/backup", &env).unwrap(), "/home/pg/backup");
        assert_eq!(interpolate("${HOME}x/${X_1}", &env).unwrap(), "/home/pgx/x");
        assert_eq!(interpolate("cost$ 5$", &env).unwrap(), "cost$ 5$");
        assert!(interpolate("$NOPE/a", &env).unwrap_err().contains("NOPE is not set"));
        assert!(interpolate("${HOME", &env).unwrap_err().contains("unterminated"));
    }
}
