//! Editing a configuration file in place: reading, setting and removing keys and sections while
//! every line that is not touched keeps its text (comments, order, spacing, blank lines), and a
//! changed line keeps its spacing around `=` and its trailing comment.

use super::ini;

/// A configuration file's lines, to be read and edited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    lines: Vec<String>,
    /// Whether the text ended with a newline.
    newline_at_end: bool,
}

/// Where a value lies in its line: `line[start..end]`, spaces before a trailing comment excluded.
fn value_span(line: &str) -> Option<(usize, usize)> {
    let eq = line.find('=')?;
    let after = &line[eq + 1..];
    let start = eq + 1 + (after.len() - after.trim_start().len());
    let mut quote: Option<char> = None;
    let mut end = line.len();
    for (i, c) in line[start..].char_indices() {
        match (quote, c) {
            (None, '#' | ';') => {
                end = start + i;
                break;
            }
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    let end = start + line[start..end].trim_end().len();
    Some((start, end))
}

/// `value` as it must be written to read back the same: quoted when it holds a comment
/// character or spaces at either end, or is empty.
fn written(value: &str) -> String {
    let quoted_already = value.starts_with(['"', '\'']) && value.ends_with(['"', '\'']);
    let needs_quotes = value.is_empty() || value.contains(['#', ';']) || value.trim() != value || quoted_already;
    let plain = !needs_quotes;
    if plain {
        value.to_owned()
    } else if value.contains('"') {
        format!("'{value}'")
    } else {
        format!("\"{value}\"")
    }
}

impl ConfigFile {
    /// The file's text, as it is.
    pub fn parse(text: &str) -> ConfigFile {
        let newline_at_end = text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines = if text.is_empty() { Vec::new() } else { body.split('\n').map(str::to_owned).collect() };
        ConfigFile { lines, newline_at_end }
    }

    /// The file's text after the edits.
    pub fn text(&self) -> String {
        let mut out = self.lines.join("\n");
        if self.newline_at_end || !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }

    fn document(&self) -> ini::Document {
        ini::parse(&self.text())
    }

    /// The section names, in file order (a name given twice, twice).
    pub fn sections(&self) -> Vec<String> {
        self.document().sections.into_iter().map(|s| s.name).collect()
    }

    /// The keys of `section` with their values, in file order; `None` when there is no such
    /// section.
    pub fn keys(&self, section: &str) -> Option<Vec<(String, String)>> {
        let doc = self.document();
        let mut found = false;
        let mut out = Vec::new();
        for s in doc.sections.into_iter().filter(|s| s.name == section) {
            found = true;
            out.extend(s.entries.into_iter().map(|e| (e.key, e.value)));
        }
        found.then_some(out)
    }

    /// The value of `key` in `section` (the last one, when it is set twice).
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        self.keys(section)?.into_iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` in `section` to `value`: the line that sets it is rewritten (its last one
    /// when there are several), else a line is added after the section's last key, else the
    /// section is added at the end of the file.
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        let doc = self.document();
        let sections: Vec<&ini::Section> = doc.sections.iter().filter(|s| s.name == section).collect();
        if let Some(entry) = sections.iter().flat_map(|s| s.entries.iter()).rev().find(|e| e.key == key) {
            let line = &mut self.lines[entry.line - 1];
            if let Some((start, end)) = value_span(line) {
                line.replace_range(start..end, &written(value));
                return;
            }
        }
        let new_line = format!("{key} = {}", written(value));
        match sections.last() {
            Some(s) => {
                let after = s.entries.last().map_or(s.line, |e| e.line);
                self.lines.insert(after, new_line);
            }
            None => {
                if self.lines.last().is_some_and(|l| !l.trim().is_empty()) {
                    self.lines.push(String::new());
                }
                self.lines.push(format!("[{section}]"));
                self.lines.push(new_line);
            }
        }
    }

    /// Removes every line setting `key` in `section`; whether there was one.
    pub fn remove_key(&mut self, section: &str, key: &str) -> bool {
        let doc = self.document();
        let mut lines: Vec<usize> = doc
            .sections
            .iter()
            .filter(|s| s.name == section)
            .flat_map(|s| s.entries.iter())
            .filter(|e| e.key == key)
            .map(|e| e.line)
            .collect();
        lines.sort_unstable();
        for line in lines.iter().rev() {
            self.lines.remove(line - 1);
        }
        !lines.is_empty()
    }

    /// Removes `section`: its header, its keys and what lies between them, and the blank lines
    /// after it. Comments after its last key are kept (they usually introduce what follows).
    /// Whether there was such a section.
    pub fn remove_section(&mut self, section: &str) -> bool {
        let doc = self.document();
        let mut ranges: Vec<(usize, usize)> = doc
            .sections
            .iter()
            .filter(|s| s.name == section)
            .map(|s| (s.line, s.entries.last().map_or(s.line, |e| e.line)))
            .collect();
        ranges.sort_unstable();
        for &(first, last) in ranges.iter().rev() {
            let mut end = last;
            while end < self.lines.len() && self.lines[end].trim().is_empty() {
                end += 1;
            }
            self.lines.drain(first - 1..end);
        }
        !ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# pgmoneta\n\n[pgmoneta]\nhost=*   # everyone\nbase_dir   =   /srv/b\n\n\
                        ; the primary\n[primary]\nhost = db1\nport = 5432\n\n# the end\n";

    #[test]
    fn reads_sections_keys_and_values() {
        let f = ConfigFile::parse(TEXT);
        assert_eq!(f.sections(), ["pgmoneta", "primary"]);
        assert_eq!(f.get("pgmoneta", "host").as_deref(), Some("*"));
        assert_eq!(f.get("pgmoneta", "base_dir").as_deref(), Some("/srv/b"));
        assert_eq!(f.get("primary", "missing"), None);
        assert_eq!(f.keys("nosuch"), None);
        assert_eq!(f.keys("primary").unwrap().len(), 2);
        assert_eq!(f.text(), TEXT, "an untouched file is written back as it was");
    }

    #[test]
    fn setting_a_key_rewrites_only_its_value() {
        let mut f = ConfigFile::parse(TEXT);
        f.set("pgmoneta", "host", "localhost");
        f.set("pgmoneta", "base_dir", "/srv/with # hash");
        let text = f.text();
        assert!(text.contains("\nhost=localhost   # everyone\n"), "{text}");
        assert!(text.contains("\nbase_dir   =   \"/srv/with # hash\"\n"), "{text}");
        assert_eq!(ConfigFile::parse(&text).get("pgmoneta", "base_dir").as_deref(), Some("/srv/with # hash"));
        // Everything else is as it was.
        assert_eq!(text.lines().count(), TEXT.lines().count());
        for (a, b) in text.lines().zip(TEXT.lines()) {
            if !a.starts_with("host=") && !a.starts_with("base_dir") {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn a_new_key_goes_after_its_section_s_last_key_and_a_new_section_at_the_end() {
        let mut f = ConfigFile::parse(TEXT);
        f.set("primary", "user", "repl");
        f.set("replica", "host", "db2");
        let text = f.text();
        assert!(text.contains("port = 5432\nuser = repl\n\n# the end\n"), "{text}");
        assert!(text.ends_with("# the end\n\n[replica]\nhost = db2\n"), "{text}");
        let mut empty = ConfigFile::parse("");
        empty.set("pgmoneta", "host", "*");
        assert_eq!(empty.text(), "[pgmoneta]\nhost = *\n");
    }

    #[test]
    fn removing_keys_and_sections_leaves_the_rest() {
        let mut f = ConfigFile::parse(TEXT);
        assert!(f.remove_key("pgmoneta", "host"));
        assert!(!f.remove_key("pgmoneta", "host"));
        assert_eq!(f.get("pgmoneta", "host"), None);
        assert!(f.remove_section("primary"));
        assert!(!f.remove_section("primary"));
        assert_eq!(f.text(), "# pgmoneta\n\n[pgmoneta]\nbase_dir   =   /srv/b\n\n; the primary\n# the end\n");
    }
}
