//! Reading a workspace from TOML: errors that point at their line.

use super::*;

// ------------------------------------------------------------------ parsing and validation

/// One problem in a workspace file: where (1-based line when read from text, and the path
/// of the offending value, e.g. `rules[2].actions.team`, with 0-based indices) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The path of a TOML syntax error (the document could not be read as TOML at all).
pub const SYNTAX_PATH: &str = "(syntax)";
/// The path of an error about the document as a whole.
pub const DOCUMENT_PATH: &str = "(document)";

/// Ticket and rule priorities.
pub const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
/// The values of the `kind` condition field.
pub const KINDS: [&str; 4] = ["normal", "auto_reply", "bounce", "list"];

/// Reads a workspace from TOML text, normalises it ([`Workspace::normalize`]) and
/// validates it ([`validate`]). Every error carries the line it is about: syntax and type
/// errors from the span the `toml` crate reports, semantic errors by following their path
/// through the spanned document tree (`toml::de::DeTable`).
pub fn parse_toml(text: &str) -> Result<Workspace, Vec<ConfigError>> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let mut errs: Vec<ConfigError> = syntax
            .iter()
            .map(|e| ConfigError {
                line: e.span().map(|s| line_at(text, s.start)),
                path: SYNTAX_PATH.into(),
                message: e.message().to_string(),
            })
            .collect();
        sort_errors(&mut errs);
        return Err(errs);
    }
    let root = DeValue::Table(doc.into_inner());
    let mut ws: Workspace = toml::from_str(text).map_err(|e| {
        let (line, path) = match e.span() {
            Some(s) => (Some(line_at(text, s.start)), path_at(&root, s.start)),
            None => (None, String::new()),
        };
        let path = if path.is_empty() { DOCUMENT_PATH.to_string() } else { path };
        vec![ConfigError { line, path, message: e.message().to_string() }]
    })?;
    ws.normalize();
    let mut errs = validate(&ws);
    if errs.is_empty() {
        return Ok(ws);
    }
    for e in &mut errs {
        e.line = locate(&root, &e.path).map(|off| line_at(text, off));
    }
    sort_errors(&mut errs);
    Err(errs)
}

pub(super) fn sort_errors(errs: &mut Vec<ConfigError>) {
    // Stable: errors of one line keep the order validation found them in.
    errs.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    errs.dedup();
}

/// The 1-based line of a byte offset.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

pub(super) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `rules[2].actions.team` → rules, 2, actions, team.
pub(super) fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        while let Some(close) = rest.find(']') {
            match rest.get(1..close).and_then(|n| n.parse().ok()) {
                Some(n) => out.push(Seg::Index(n)),
                None => return out,
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

/// The byte offset of the deepest part of `path` present in the document: the key of a
/// `key = value`, the header of an `[[array]]` element, an element of an inline array.
/// A path whose last part is absent (a missing key) gives its parent's position.
pub(super) fn locate(root: &DeValue<'_>, path: &str) -> Option<usize> {
    let mut cur = root;
    let mut best = None;
    for seg in segments(path) {
        match (seg, cur) {
            (Seg::Key(k), DeValue::Table(t)) => {
                let Some((key, val)) = t.iter().find(|(key, _)| key.get_ref() == k) else { break };
                best = Some(key.span().start);
                cur = val.get_ref();
            }
            (Seg::Index(i), DeValue::Array(a)) => {
                let Some(v) = a.get(i) else { break };
                best = Some(v.span().start);
                cur = v.get_ref();
            }
            _ => break,
        }
    }
    best
}

/// The path of the deepest key or element whose span holds `offset` ("" when none does).
pub(super) fn path_at(root: &DeValue<'_>, offset: usize) -> String {
    fn walk(v: &DeValue<'_>, offset: usize, out: &mut String) -> bool {
        let inside = |s: std::ops::Range<usize>| s.start <= offset && offset < s.end.max(s.start + 1);
        match v {
            DeValue::Table(t) => {
                for (k, val) in t.iter() {
                    let len = out.len();
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k.get_ref());
                    if inside(k.span()) || walk(val.get_ref(), offset, out) || inside(val.span()) {
                        return true;
                    }
                    out.truncate(len);
                }
                false
            }
            DeValue::Array(a) => {
                for (i, val) in a.iter().enumerate() {
                    let len = out.len();
                    out.push_str(&format!("[{i}]"));
                    if walk(val.get_ref(), offset, out) || inside(val.span()) {
                        return true;
                    }
                    out.truncate(len);
                }
                false
            }
            _ => false,
        }
    }
    let mut out = String::new();
    walk(root, offset, &mut out);
    out
}
