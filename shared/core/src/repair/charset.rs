//! Header bytes that are not UTF-8: raw 8-bit text in a legacy charset (a GBK subject, a
//! Shift_JIS display name, a Windows-1252 file name) or a raw ISO-2022-JP header. The
//! charset the message declares for its body comes first; where it cannot decode the
//! bytes, chardetng guesses from all of the message's undecodable header bytes together.

use encoding_rs::{Encoding, ISO_2022_JP, UTF_8};
use std::borrow::Cow;

/// Whether these header bytes need decoding: invalid UTF-8, or ISO-2022-JP escapes.
pub fn needs_decoding(bytes: &[u8]) -> bool {
    (!bytes.is_ascii() && std::str::from_utf8(bytes).is_err()) || is_iso_2022_jp(bytes)
}

fn is_iso_2022_jp(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| matches!(w, [0x1b, b'$', b'B' | b'@'] | [0x1b, b'(', b'J']))
        && !bytes.windows(2).any(|w| w == b"=?")
}

/// The encoding named by a MIME charset label; `None` for unknown labels and for UTF-8
/// (which cannot be what failed).
/// ASCII labels too: encoding_rs reads them as Windows-1252 (as browsers do), but a
/// message that says its text is ASCII says nothing about its 8-bit header bytes.
pub fn declared(label: &str) -> Option<&'static Encoding> {
    if is_ascii_label(label) {
        return None;
    }
    Encoding::for_label(label.trim().trim_matches('"').as_bytes()).filter(|e| *e != UTF_8)
}

/// A charset label that names ASCII.
pub fn is_ascii_label(label: &str) -> bool {
    let label = label.trim().trim_matches('"').to_ascii_lowercase();
    ["us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us", "646", "cp367", "ibm367"]
        .contains(&label.as_str())
}

/// What chardetng makes of `sample` (the message's undecodable header bytes).
pub fn detect(sample: &[u8]) -> &'static Encoding {
    let mut d = chardetng::EncodingDetector::new();
    d.feed(sample, true);
    d.guess(None, false)
}

/// Decodes one header's bytes: ISO-2022-JP by its escapes, else the declared charset if it
/// decodes them without a replacement, else the detected one; the result says whether
/// anything had to be replaced (truly undecodable bytes).
pub fn decode(
    bytes: &[u8],
    declared: Option<&'static Encoding>,
    detected: &'static Encoding,
) -> (String, &'static Encoding, bool) {
    if is_iso_2022_jp(bytes)
        && let Some(s) = ISO_2022_JP.decode_without_bom_handling_and_without_replacement(bytes)
    {
        return (s.into_owned(), ISO_2022_JP, false);
    }
    for enc in declared.into_iter().chain([detected]) {
        if let Some(s) = enc.decode_without_bom_handling_and_without_replacement(bytes) {
            return (s.into_owned(), enc, false);
        }
    }
    let (s, had_errors): (Cow<'_, str>, bool) = detected.decode_without_bom_handling(bytes);
    (s.into_owned(), detected, had_errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_first_then_detection() {
        // "测试" in GBK: the declared GB2312 label maps to GBK.
        let gbk = b"\xb2\xe2\xca\xd4";
        assert_eq!(decode(gbk, declared("gb2312"), UTF_8).0, "测试");
        // Declared UTF-8 cannot decode it: the detected charset does.
        assert_eq!(decode(gbk, declared("utf-8"), encoding_rs::GBK).0, "测试");
        assert!(
            declared("utf-8").is_none() && declared("x-unknown").is_none() && declared("US-ASCII").is_none()
        );
        assert_eq!(decode(b"\x1b$B%F%9%H\x1b(B", None, UTF_8).0, "テスト");
    }
}
