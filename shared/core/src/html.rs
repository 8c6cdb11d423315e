//! The one HTML sanitiser: every piece of mail HTML that leaves Mailroom (the API, the web
//! inbox, `mailroom parse`) passes through [`sanitize`], also HTML we changed after a first
//! pass (our own replies with their tracking links restored).
//!
//! ammonia does the work (an allow-list over html5ever's parse, the browser's own reading
//! of the markup); this module only fixes the policy: links to http(s), mailto and tel
//! only, no relative URLs (in our origin they would point at our own API), no `data:`
//! anywhere, `rel="noopener noreferrer"` on every link, and remote images left out unless
//! the reader asked for them, so that opening a mail does not tell its sender.

use ammonia::{Builder, UrlRelative};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What to do with images whose source is on another host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteImages {
    /// Drop their `src` (the default: the sender learns nothing from an open).
    Block,
    /// Keep them (the reader pressed "show images").
    Allow,
}

/// Sanitised HTML and how many remote images were left out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeHtml {
    pub html: String,
    pub blocked_images: usize,
}

fn is_remote(url: &str) -> bool {
    let u = url.trim_start().to_ascii_lowercase();
    u.starts_with("http:") || u.starts_with("https:") || u.starts_with("//")
}

/// Sanitises mail HTML. Idempotent: sanitising the output again changes nothing (with the
/// same `images`).
pub fn sanitize(html: &str, images: RemoteImages) -> SafeHtml {
    let blocked = Arc::new(AtomicUsize::new(0));
    let counter = blocked.clone();
    let schemes: HashSet<&str> = ["http", "https", "mailto", "tel", "cid"].into_iter().collect();
    let mut b = Builder::default();
    b.url_schemes(schemes)
        .url_relative(UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"))
        .attribute_filter(move |element, attribute, value| {
            if element == "img" && attribute == "src" && images == RemoteImages::Block && is_remote(value) {
                counter.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Some(Cow::Borrowed(value))
        });
    let html = b.clean(html).to_string();
    SafeHtml { html, blocked_images: blocked.load(Ordering::Relaxed) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = r#"<html><head><meta http-equiv="refresh" content="0;url=https://evil.example/"><style>body{background:url(https://evil.example/css.png)}</style><base href="https://evil.example/"></head>
<body onload="alert(1)"><script>alert(2)</script>
<a href="javascript:alert(3)">js</a><a href="JaVaScRiPt&#58;alert(4)">js2</a><a href="data:text/html,<script>alert(5)</script>">data</a>
<a href="/admin/workspace">relative</a><a href="https://ok.example/x">ok</a><a href="mailto:a@b.example">m</a>
<img src="https://tracker.example/p.gif" onerror="alert(6)"><img src="//tracker.example/q.gif"><img src="cid:logo@x"><img src="data:image/png;base64,AAAA">
<form action="https://evil.example/"><input name="password"></form><iframe src="https://evil.example/"></iframe>
<div style="background-image:url(https://evil.example/s.png)">styled</div><svg><a href="javascript:alert(7)">s</a></svg>
</body></html>"#;

    #[test]
    fn hostile_mail_is_inert_and_remote_images_are_blocked() {
        let out = sanitize(HOSTILE, RemoteImages::Block);
        let lower = out.html.to_ascii_lowercase();
        for bad in [
            "javascript",
            "data:",
            "<script",
            "onload",
            "onerror",
            "<meta",
            "<style",
            "<base",
            "<form",
            "<input",
            "<iframe",
            "style=",
            "evil.example",
            "tracker.example",
            "/admin/",
        ] {
            assert!(!lower.contains(bad), "{bad} survived: {}", out.html);
        }
        // The protocol-relative one is dropped as a relative URL before it counts.
        assert_eq!(out.blocked_images, 1, "{}", out.html);
        assert!(out.html.contains(r#"href="https://ok.example/x""#), "{}", out.html);
        assert!(out.html.contains("noopener noreferrer"));
        assert!(out.html.contains(r#"src="cid:logo@x""#), "{}", out.html);
        assert_eq!(
            sanitize(&out.html, RemoteImages::Block),
            SafeHtml { html: out.html.clone(), blocked_images: 0 }
        );
    }

    #[test]
    fn images_are_kept_when_the_reader_asks() {
        let out = sanitize(HOSTILE, RemoteImages::Allow);
        assert_eq!(out.blocked_images, 0);
        assert!(out.html.contains(r#"src="https://tracker.example/p.gif""#), "{}", out.html);
        assert!(!out.html.to_ascii_lowercase().contains("onerror"));
    }
}
