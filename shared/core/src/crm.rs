//! Contact and company rules that need no storage: which domain is a company, and a
//! company's display name from its domain.

/// Consumer mail providers: an address there says nothing about the sender's company.
/// Kept sorted; extend with `company_exclusions` in the workspace for local ones.
pub const FREEMAIL: &[&str] = &[
    "126.com",
    "163.com",
    "aol.com",
    "bluewin.ch",
    "comcast.net",
    "fastmail.com",
    "free.fr",
    "freenet.de",
    "gmail.com",
    "gmx.at",
    "gmx.ch",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hey.com",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.de",
    "hotmail.fr",
    "icloud.com",
    "libero.it",
    "live.com",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "naver.com",
    "orange.fr",
    "outlook.com",
    "outlook.de",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "rambler.ru",
    "t-online.de",
    "tutanota.com",
    "web.de",
    "yahoo.co.jp",
    "yahoo.co.uk",
    "yahoo.com",
    "yahoo.de",
    "yahoo.fr",
    "yandex.com",
    "yandex.ru",
    "ymail.com",
    "zoho.com",
];

/// The company domain of an address: its domain, unless it is freemail or excluded.
pub fn company_domain(email: &str, exclusions: &[String]) -> Option<String> {
    let domain = email.rsplit_once('@')?.1.trim().trim_end_matches('.').to_lowercase();
    if domain.is_empty()
        || FREEMAIL.binary_search(&domain.as_str()).is_ok()
        || exclusions.iter().any(|e| e.eq_ignore_ascii_case(&domain))
    {
        return None;
    }
    Some(domain)
}

/// A display name for a company known only by its domain: "kelar-works.co.uk" →
/// "Kelar Works".
pub fn company_name(domain: &str) -> String {
    let label = domain.split('.').next().unwrap_or(domain);
    label
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freemail_list_is_sorted() {
        assert!(FREEMAIL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn company_domains() {
        assert_eq!(company_domain("a@Kelarworks.NL", &[]), Some("kelarworks.nl".into()));
        assert_eq!(company_domain("a@gmail.com", &[]), None);
        assert_eq!(company_domain("a@GMX.de", &[]), None);
        assert_eq!(company_domain("a@partner.example", &["partner.example".into()]), None);
        assert_eq!(company_domain("not-an-address", &[]), None);
        assert_eq!(company_name("kelar-works.co.uk"), "Kelar Works");
    }
}
