//! Bodies mail-parser gives up on, decoded as far as they go. Written here rather than
//! taken from a crate: the `base64` crate's decoders reject (or stop at) exactly the input
//! this exists for, and no maintained crate decodes uuencode inside MIME parts.

/// Base64 read the way a tolerant decoder does (Python's `email` package with its
/// default policy): characters outside the alphabet are skipped, padding may be missing
/// or wrong, a final group of 2 or 3 characters gives 1 or 2 bytes, a lone last character
/// (6 bits, no whole byte) is dropped. Unlike Python it goes on after a padded group, so
/// parts written as several padded blocks keep every block.
pub fn base64_tolerant(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let (mut acc, mut n) = (0u32, 0u8);
    let flush = |acc: u32, n: u8, out: &mut Vec<u8>| match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    };
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                flush(acc, n, &mut out);
                (acc, n) = (0, 0);
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&acc.to_be_bytes()[1..]);
            (acc, n) = (0, 0);
        }
    }
    flush(acc, n, &mut out);
    out
}

/// Whether mail-parser's strict reading would fail on this base64 (a character outside
/// the alphabet, whitespace and `=` aside).
pub fn base64_is_broken(input: &[u8]) -> bool {
    input
        .iter()
        .any(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=') || c.is_ascii_whitespace()))
}

/// Whether this base64 ends in a group of 2 or 3 characters without padding (cut short):
/// mail-parser drops that group's 1 or 2 bytes.
pub fn base64_is_truncated(input: &[u8]) -> bool {
    let n = input.iter().filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/')).count();
    n % 4 >= 2 && !input.contains(&b'=')
}

/// The bytes of a uuencoded body (`begin MODE NAME` ... `end`) and the name it gives; lines
/// before `begin` are skipped, a short or damaged line keeps what it has.
pub fn uudecode(input: &[u8]) -> Option<(Vec<u8>, Option<String>)> {
    let text = String::from_utf8_lossy(input);
    let mut lines = text.lines();
    let name = lines.by_ref().find_map(|l| {
        let rest = l.strip_prefix("begin ")?;
        let (_mode, name) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
        Some(Some(name.trim().to_string()).filter(|n| !n.is_empty()))
    })?;
    let mut out = Vec::new();
    for line in lines {
        let line = line.trim_end_matches('\r');
        if line == "end" {
            break;
        }
        let bytes = line.as_bytes();
        let Some((&len, data)) = bytes.split_first() else { continue };
        let len = usize::from(len.wrapping_sub(b' ') & 0x3f);
        if len == 0 {
            continue;
        }
        let mut got = Vec::with_capacity(len + 2);
        for chunk in data.chunks(4) {
            let v: Vec<u32> = chunk.iter().map(|c| u32::from(c.wrapping_sub(b' ') & 0x3f)).collect();
            let g = v.iter().chain(std::iter::repeat(&0)).take(4).fold(0u32, |a, x| (a << 6) | x);
            got.extend_from_slice(&g.to_be_bytes()[1..]);
        }
        got.truncate(len);
        out.extend_from_slice(&got);
    }
    Some((out, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_far_as_it_goes() {
        // "Hello, world" = SGVsbG8sIHdvcmxk; truncated by 1, 2 and 3 characters.
        assert_eq!(base64_tolerant(b"SGVsbG8sIHdvcmxk"), b"Hello, world");
        assert_eq!(base64_tolerant(b"SGVsbG8sIHdvcmx"), b"Hello, worl");
        assert_eq!(base64_tolerant(b"SGVsbG8sIHdvcm"), b"Hello, wor");
        assert_eq!(base64_tolerant(b"SGVsbG8sIHdvc"), b"Hello, wo");
        // Stray characters and bad padding.
        assert_eq!(base64_tolerant(b"SGVs*bG8s\r\nIHdv.cmxk==="), b"Hello, world");
        assert!(base64_is_broken(b"SGVs*bG8s") && !base64_is_broken(b"SGVs\r\nbG8s=="));
        assert!(base64_is_truncated(b"SGVsbG8sIHdvcmx") && !base64_is_truncated(b"SGVsbG8sIHdvcmxk"));
        assert!(!base64_is_truncated(b"SGVsbG8sIHdvcm=="));
    }

    #[test]
    fn uuencode() {
        // Python: binascii.b2a_uu(b"Hello, world\n")
        let body = b"begin 644 hello.txt\n-2&5L;&\\L('=O<FQD\"@``\n`\nend\n";
        let (bytes, name) = uudecode(body).expect("decodes");
        assert_eq!(bytes, b"Hello, world\n");
        assert_eq!(name.as_deref(), Some("hello.txt"));
        assert!(uudecode(b"no begin line").is_none());
    }
}
