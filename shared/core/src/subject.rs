//! Subject normalisation for threading: strips reply and auto-reply prefixes in the
//! languages mail clients write them in, and keeps forwards apart (a forward starts a new
//! conversation, so "Fwd: X" must never normalise to the same key as "Re: X").
//!
//! Written by hand rather than with a regex crate: the rule is a short loop over a
//! prefix token list, and the tokens are matched case-insensitively on Unicode text.

/// What a subject says about the message it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubjectInfo {
    /// Lower-cased, whitespace-collapsed subject without reply prefixes. A forward (and a
    /// reply to one) keeps a `fwd: ` marker in front, so it never equals the key of the
    /// conversation it quotes.
    pub key: String,
    /// The outermost prefix is a reply prefix ("Re:", "AW:", "SV:", "Antw:", "回复:" ...).
    pub reply: bool,
    /// The outermost prefix is a forward prefix ("Fwd:", "WG:", "TR:", "VB:", "转发:" ...).
    pub forward: bool,
    /// An auto-reply prefix was found ("Automatic reply:", "Abwesenheitsnotiz:" ...).
    pub auto_reply: bool,
}

const REPLY: &[&str] = &[
    "re",
    "aw",
    "sv",
    "antw",
    "antwort",
    "r",
    "rif",
    "réf",
    "ref",
    "vs",
    "odp",
    "ynt",
    "atb",
    "απ",
    "на",
    "ответ",
    "отв",
    "回复",
    "答复",
    "回覆",
    "返信",
    "답장",
    "res",
];
const FORWARD: &[&str] = &[
    "fwd",
    "fw",
    "wg",
    "tr",
    "vb",
    "rv",
    "doorst",
    "i",
    "enc",
    "pd",
    "fs",
    "vl",
    "転送",
    "转发",
    "轉寄",
    "пересл",
];
const AUTO: &[&str] = &[
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "out of office",
    "out of the office",
    "out of office reply",
    "automatische antwort",
    "abwesenheitsnotiz",
    "abwesend",
    "réponse automatique",
    "absence du bureau",
    "respuesta automática",
    "fuera de la oficina",
    "automatiskt svar",
    "autosvar",
    "frånvaro",
    "afwezig",
    "automatisch antwoord",
    "risposta automatica",
    "resposta automática",
    "自動応答",
    "自动答复",
    "自动回复",
    "автоматический ответ",
];

/// Analyses a decoded subject.
pub fn analyse(subject: &str) -> SubjectInfo {
    let mut info = SubjectInfo::default();
    let mut rest = subject.trim();
    let mut first = true;
    let mut forwarded = false;
    while let Some((token, after)) = prefix(rest) {
        let t = token.to_lowercase();
        let kind = if REPLY.contains(&t.as_str()) {
            1
        } else if FORWARD.contains(&t.as_str()) {
            2
        } else if AUTO.contains(&t.as_str()) {
            3
        } else {
            break;
        };
        if first {
            info.reply = kind == 1;
            info.forward = kind == 2;
        }
        info.auto_reply |= kind == 3;
        forwarded |= kind == 2;
        first = false;
        rest = after;
    }
    let mut key = collapse(rest);
    // "Re: Fwd: X" belongs to the forward's conversation, not to X's.
    if forwarded {
        key.insert_str(0, "fwd: ");
    }
    info.key = key;
    info
}

/// Splits one "Word:" / "Word [2]:" / "Word：" prefix off `s`, if it has one.
fn prefix(s: &str) -> Option<(&str, &str)> {
    let colon = s.find([':', '：'])?;
    let head = s[..colon].trim_end();
    // "RE[2]" and "Re(3)" are counted prefixes.
    let head = match head.find(['[', '(']) {
        Some(i)
            if head.ends_with([']', ')'])
                && head[i + 1..head.len() - 1].chars().all(|c| c.is_ascii_digit()) =>
        {
            head[..i].trim_end()
        }
        _ => head,
    };
    if head.is_empty() || head.chars().count() > 24 || head.chars().any(|c| c.is_ascii_digit() || c == '@') {
        return None;
    }
    let width = s[colon..].chars().next().map(char::len_utf8).unwrap_or(1);
    Some((head, s[colon + width..].trim_start()))
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_reply_prefixes_in_many_languages() {
        for s in [
            "Re: Invoice",
            "RE: RE: invoice",
            "AW: Invoice",
            "SV:Invoice",
            "Antw: Invoice",
            "回复：Invoice",
            "Re[2]: Invoice",
            "RE : Invoice",
        ] {
            let i = analyse(s);
            assert_eq!(i.key, "invoice", "{s}");
            assert!(i.reply, "{s}");
            assert!(!i.forward, "{s}");
        }
    }

    #[test]
    fn forwards_keep_a_marker() {
        let f = analyse("Fwd: RE: Invoice");
        assert!(f.forward && !f.reply);
        assert_eq!(f.key, "fwd: invoice");
        assert_ne!(f.key, analyse("Re: Invoice").key);
        assert_eq!(analyse("转发: Invoice").key, "fwd: invoice");
        assert_eq!(analyse("WG: Invoice").key, "fwd: invoice");
        let r = analyse("Out of office: RE: Fwd: RE: Invoice");
        assert!(r.auto_reply && !r.forward);
        assert_eq!(r.key, "fwd: invoice");
    }

    #[test]
    fn auto_reply_prefixes() {
        let a = analyse("Automatic reply: Re: Invoice");
        assert!(a.auto_reply);
        assert_eq!(a.key, "invoice");
        assert_eq!(analyse("Abwesenheitsnotiz: Rechnung").key, "rechnung");
    }

    #[test]
    fn plain_colons_are_kept() {
        assert_eq!(analyse("Order 12345: broken").key, "order 12345: broken");
        assert_eq!(analyse("Question: how do I export").key, "question: how do i export");
        assert_eq!(analyse("  Hello   World ").key, "hello world");
    }
}
