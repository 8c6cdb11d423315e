//! The best reading of an address header that RFC 5322 parsing cannot read: an unquoted
//! display name with dots or `@`, a trailing `>`, a missing `<`, a name with spaces and no
//! brackets, a bare `MAILER-DAEMON` or an empty `<>`. Used only where mail-parser's reading
//! yields no valid address for a piece of the header; what it yields is marked repaired.

/// One address read leniently: `(display name, address)`. The address may lack a domain
/// (`MAILER-DAEMON`): the caller completes it.
pub type Lenient = (Option<String>, String);

/// Reads every address in a header value, leniently.
pub fn lenient(value: &str) -> Vec<Lenient> {
    let value = strip_comments(value.trim());
    if value.is_empty() {
        return vec![];
    }
    let pieces = split_outside_quotes(&value);
    // Commas inside an unquoted name ("Doe, Jane jane@x") split a name from its address:
    // split only where every piece has an address of its own.
    let pieces =
        if pieces.len() > 1 && pieces.iter().all(|p| p.contains('@')) { pieces } else { vec![&value[..]] };
    pieces.into_iter().flat_map(one).collect()
}

/// The value without `(comments)` outside quoted strings.
fn strip_comments(value: &str) -> String {
    let (mut out, mut depth, mut quoted) = (String::with_capacity(value.len()), 0usize, false);
    for c in value.chars() {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn split_outside_quotes(value: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' | ';' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

const STRIP: &[char] = &['<', '>', '"', '\'', '(', ')', '[', ']', ',', ';', ':'];

fn one(piece: &str) -> Vec<Lenient> {
    // An angle-bracketed part, closed or not: an address (spaces inside dropped, a source
    // route dropped), empty (the null sender: the mail system) or a bare local part.
    if let Some(open) = piece.find('<') {
        let inner = &piece[open + 1..];
        let close = inner.find('>').unwrap_or(inner.len());
        let name = name_of(&[piece[..open].trim(), inner.get(close + 1..).unwrap_or("").trim()].join(" "));
        let addr: String = inner[..close].chars().filter(|c| !c.is_whitespace()).collect();
        let addr = match addr.strip_prefix('@') {
            Some(route) => route.split_once(':').map_or(addr.clone(), |(_, a)| a.to_string()),
            None => addr,
        };
        if addr.is_empty() {
            let name = name.filter(|n| !n.eq_ignore_ascii_case("MAILER-DAEMON"));
            return vec![(name, "MAILER-DAEMON".into())];
        }
        if is_address(&addr) || is_local_part(&addr) {
            let name = name.filter(|n| !n.eq_ignore_ascii_case(&addr));
            return vec![(name, addr)];
        }
    }
    let words: Vec<&str> = piece.split_whitespace().collect();
    let addr =
        |w: &str| Some(w.trim_matches(STRIP).trim_end_matches('.').to_string()).filter(|a| is_address(a));
    let found: Vec<(usize, String)> =
        words.iter().enumerate().filter_map(|(i, w)| Some((i, addr(w)?))).collect();
    match found.last() {
        // Nothing but addresses: each is one ("a@x b@y").
        Some(_) if found.len() == words.len() => found.into_iter().map(|(_, a)| (None, a)).collect(),
        Some((i, a)) => {
            let rest: Vec<&str> = words.iter().enumerate().filter(|(j, _)| j != i).map(|(_, w)| *w).collect();
            let name = name_of(&rest.join(" ")).filter(|n| !n.eq_ignore_ascii_case(a));
            vec![(name, a.clone())]
        }
        None if words.len() == 1 && is_local_part(words[0]) => vec![(None, words[0].to_string())],
        None => vec![],
    }
}

/// A display name from what is left around the address: quotes and brackets dropped,
/// nothing if no letter or digit is left.
fn name_of(rest: &str) -> Option<String> {
    let name = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    let name = name.trim_matches(|c: char| c.is_whitespace() || STRIP.contains(&c)).trim();
    Some(name.to_string()).filter(|n| n.chars().any(char::is_alphanumeric))
}

/// `local@domain.tld` with an atom-like local part.
fn is_address(s: &str) -> bool {
    s.rsplit_once('@').is_some_and(|(l, d)| {
        is_local_part(l)
            && d.contains('.')
            && !d.starts_with('.')
            && !d.ends_with('.')
            && d.chars().all(|c| c.is_alphanumeric() || ".-".contains(c))
    })
}

fn is_local_part(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(v: &str) -> Vec<(Option<&str>, &str)> {
        // Leaks are fine in a test: it keeps the expected values readable.
        lenient(v).into_iter().map(|(n, e)| (n.map(|n| &*n.leak()), &*e.leak())).collect()
    }

    #[test]
    fn broken_headers_read_as_well_as_they_can_be() {
        assert_eq!(read("John Q. Public john@example.com"), [(Some("John Q. Public"), "john@example.com")]);
        assert_eq!(read("john@example.com>"), [(None, "john@example.com")]);
        assert_eq!(read("Big Bug bb@bug.com"), [(Some("Big Bug"), "bb@bug.com")]);
        assert_eq!(read("Jane Doe jane@x.example>"), [(Some("Jane Doe"), "jane@x.example")]);
        assert_eq!(read("support@acme.example <support@acme.example>"), [(None, "support@acme.example")]);
        assert_eq!(read("MAILER-DAEMON"), [(None, "MAILER-DAEMON")]);
        assert_eq!(
            read("Mail Delivery Subsystem <MAILER-DAEMON>"),
            [(Some("Mail Delivery Subsystem"), "MAILER-DAEMON")]
        );
        assert_eq!(read("MAILER-DAEMON <>"), [(None, "MAILER-DAEMON")]);
        assert_eq!(read("<>"), [(None, "MAILER-DAEMON")]);
        assert_eq!(
            read("a@x.example, Bob Smith bob@y.example"),
            [(None, "a@x.example"), (Some("Bob Smith"), "bob@y.example")]
        );
        assert_eq!(read("Doe, Jane jane@x.example"), [(Some("Doe, Jane"), "jane@x.example")]);
        assert!(read("John Smith").is_empty());
        assert_eq!(
            read("tim@a.example concierge@a.example"),
            [(None, "tim@a.example"), (None, "concierge@a.example")]
        );
        assert_eq!(
            read("John Doe <jdoe@machine(comment).  example>"),
            [(Some("John Doe"), "jdoe@machine.example")]
        );
        assert_eq!(read("<@relay.example:mary@example.net>"), [(None, "mary@example.net")]);
        assert!(read("<Undisclosed-Recipient:@mailman.enron.com;>").is_empty());
        assert!(read("\"xxxxx@xxxxx\" <xxxxx@xxxxx>").is_empty());
    }
}
