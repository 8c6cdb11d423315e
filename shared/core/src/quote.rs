//! Separates the new text of a reply from the quoted history and the signature.
//!
//! Hand-written: the crates that do this (e.g. talon ports) are not maintained for Rust;
//! the rules are the attribution lines and header blocks the common clients write, in
//! the languages our users write in.

/// A plain-text body split into what the sender wrote now, what they quoted and their
/// signature.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    pub new_text: String,
    pub quoted: Option<String>,
    pub signature: Option<String>,
}

const SEPARATORS: &[&str] = &[
    "original message",
    "ursprüngliche nachricht",
    "message d'origine",
    "mensaje original",
    "ursprungligt meddelande",
    "oorspronkelijk bericht",
    "messaggio originale",
    "mensagem original",
    "原始邮件",
    "元のメッセージ",
    "исходное сообщение",
    "forwarded message",
    "weitergeleitete nachricht",
    "message transféré",
];
const ATTRIBUTION_ENDS: &[&str] = &[
    "wrote:",
    "wrote :",
    "schrieb:",
    "a écrit :",
    "a écrit:",
    "escribió:",
    "skrev:",
    "schreef:",
    "ha scritto:",
    "escreveu:",
    "написал:",
    "написала:",
    "написал(а):",
    "写道：",
    "写道:",
    "寫道：",
    "のメッセージ:",
    "書きました:",
];
const FROM_LABELS: &[&str] = &["from", "von", "de", "från", "van", "da", "差出人", "发件人", "от", "寄件者"];
const OTHER_LABELS: &[&str] = &[
    "sent",
    "date",
    "to",
    "subject",
    "cc",
    "gesendet",
    "an",
    "betreff",
    "datum",
    "envoyé",
    "à",
    "objet",
    "enviado el",
    "enviado",
    "para",
    "asunto",
    "skickat",
    "till",
    "ämne",
    "kopia",
    "verzonden",
    "aan",
    "onderwerp",
    "送信日時",
    "宛先",
    "件名",
    "发送时间",
    "收件人",
    "主题",
    "抄送",
    "отправлено",
    "кому",
    "тема",
    "копия",
];
const MOBILE_SIGNATURES: &[&str] = &[
    "sent from my iphone",
    "sent from my ipad",
    "sent from my android",
    "sent from outlook",
    "get outlook for",
    "von meinem iphone gesendet",
    "envoyé de mon iphone",
    "enviado desde mi iphone",
    "skickat från min iphone",
    "verzonden vanaf mijn iphone",
];

/// Splits `text` (a decoded text/plain body, or the text rendering of an HTML body).
pub fn split(text: &str) -> Split {
    let lines: Vec<&str> = text.lines().collect();
    let quote_start = (0..lines.len()).find(|&i| starts_quote(&lines, i));
    let (head, tail) = match quote_start {
        Some(i) => (&lines[..i], &lines[i..]),
        None => (&lines[..], &[][..]),
    };
    // Bottom-posted and interleaved replies: quoted lines above the history marker are
    // history too; the sender's own lines stay.
    let own: Vec<&str> = head.iter().copied().filter(|l| !is_quoted_line(l)).collect();
    let quoted_lines: Vec<&str> =
        head.iter().copied().filter(|l| is_quoted_line(l)).chain(tail.iter().copied()).collect();
    let quoted = Some(quoted_lines.join("\n"));
    let sig_start = own.iter().rposition(|l| {
        let t = l.trim_end();
        // "-- " (RFC 3676) and "--" (the trailing space is often stripped).
        t == "--"
    });
    let sig_start = sig_start.or_else(|| {
        own.iter().rposition(|l| {
            let t = l.trim().to_lowercase();
            MOBILE_SIGNATURES.iter().any(|s| t.starts_with(s))
        })
    });
    let (body, signature) = match sig_start {
        Some(i) => (&own[..i], Some(own[i..].join("\n").trim().to_string()).filter(|s| !s.is_empty())),
        None => (&own[..], None),
    };
    Split {
        new_text: body.join("\n").trim().to_string(),
        quoted: quoted.map(|q| q.trim().to_string()).filter(|q| !q.is_empty()),
        signature,
    }
}

fn is_quoted_line(l: &str) -> bool {
    let t = l.trim_start();
    // "> text", ">> text" and The Bat's initials: " MK> text".
    t.starts_with('>')
        || t.find('>').is_some_and(|i| i <= 3 && t[..i].chars().all(char::is_alphabetic) && i > 0)
}

fn starts_quote(lines: &[&str], i: usize) -> bool {
    let l = lines[i].trim();
    let low = l.to_lowercase();
    if low.is_empty() {
        return false;
    }
    // "-----Original Message-----", "------------------ 原始邮件 ------------------"
    if low.starts_with("---") && SEPARATORS.iter().any(|s| low.contains(s)) {
        return true;
    }
    // Outlook's rule line above its header block.
    if l.len() >= 20 && l.chars().all(|c| c == '_') {
        return lines.get(i + 1..i + 4).is_some_and(|next| next.iter().any(|n| header_label(n).is_some()));
    }
    if is_attribution(&low) {
        return true;
    }
    // A two-line attribution: "On Mon, 4 Mar 2024 ...\nName <a@b> wrote:"
    if (low.starts_with("on ") || low.starts_with("am ") || low.starts_with("le "))
        && lines.get(i + 1).is_some_and(|n| is_attribution(&n.trim().to_lowercase()))
    {
        return true;
    }
    // A header block: "From: ...", then Sent/To/Subject lines.
    if let Some(label) = header_label(l) {
        let following =
            lines.iter().skip(i + 1).take(4).filter(|n| header_label(n).is_some_and(|x| x != label)).count();
        return following >= 2;
    }
    if is_quoted_line(lines[i]) {
        // A quote only begins the history when everything after it is quoted or blank.
        return lines[i..]
            .iter()
            .all(|n| n.trim().is_empty() || is_quoted_line(n) || n.trim().ends_with(':'));
    }
    false
}

/// "On <date>, <name> wrote:", "Am <date> schrieb <name>:" and the like: a line ending in
/// a colon with an attribution verb and a date or address in it.
fn is_attribution(low: &str) -> bool {
    if ATTRIBUTION_ENDS.iter().any(|e| low.ends_with(e)) {
        return true;
    }
    low.ends_with(':')
        && low.chars().count() < 240
        && (low.contains('@') || low.chars().any(|c| c.is_ascii_digit()))
        && ATTRIBUTION_VERBS.iter().any(|v| low.contains(v))
}

const ATTRIBUTION_VERBS: &[&str] = &[
    " wrote",
    " schrieb ",
    " écrit",
    " escribió",
    " skrev",
    " schreef",
    " scritto",
    " escreveu",
    " написал",
];

/// The label of a "Label: value" line of a quoted header block, lower-cased.
fn header_label(l: &str) -> Option<String> {
    let t = l.trim().trim_start_matches('*').trim_start_matches("<b>");
    let colon = t.find([':', '：'])?;
    let label = t[..colon].trim().trim_end_matches('*').to_lowercase();
    (FROM_LABELS.contains(&label.as_str()) || OTHER_LABELS.contains(&label.as_str())).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_wrote_attribution() {
        let s = split(
            "Thanks, that worked.\n\nOn Mon, Mar 4, 2024 at 9:00 AM Maria <m@a.example> wrote:\n> Try again\n> Maria",
        );
        assert_eq!(s.new_text, "Thanks, that worked.");
        assert!(s.quoted.as_deref().is_some_and(|q| q.contains("Try again")));
    }

    #[test]
    fn two_line_attribution_and_german() {
        let s = split("Danke!\n\nAm 04.03.2024 um 09:00 schrieb Maria Keller:\n> Hallo");
        assert_eq!(s.new_text, "Danke!");
        let s = split("Ok\nOn Mon, 4 Mar 2024 09:00:00 +0100\nMaria <m@a.example> wrote:\n> x");
        assert_eq!(s.new_text, "Ok");
    }

    #[test]
    fn outlook_header_block() {
        let s = split(
            "Bitte prüfen.\n\nMit freundlichen Grüßen\nJörg\n\nVon: Acme Support <support@acme.example>\nGesendet: Montag, 4. März 2024 09:00\nAn: Jörg <j@x.example>\nBetreff: AW: Rechnung\n\nHallo",
        );
        assert_eq!(s.new_text, "Bitte prüfen.\n\nMit freundlichen Grüßen\nJörg");
        let s = split("Fine\n\n-----Original Message-----\nFrom: a\nSent: b\n");
        assert_eq!(s.new_text, "Fine");
    }

    #[test]
    fn signature_and_bottom_posting() {
        let s = split("Hello\n-- \nJane Doe\nACME");
        assert_eq!(s.new_text, "Hello");
        assert_eq!(s.signature.as_deref(), Some("-- \nJane Doe\nACME".trim()));
        let s = split("> question?\n\nanswer");
        assert_eq!(s.new_text, "answer");
        let s = split("Hi\nSent from my iPhone");
        assert_eq!(s.new_text, "Hi");
    }

    #[test]
    fn an_ordinary_colon_line_is_not_a_quote() {
        let s = split("From: my side everything works.\nTo: be honest, not quite.\nThanks");
        assert!(s.quoted.is_none());
        assert_eq!(s.new_text, "From: my side everything works.\nTo: be honest, not quite.\nThanks");
    }
}
