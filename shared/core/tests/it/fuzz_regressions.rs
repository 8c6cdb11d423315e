//! Inputs the fuzzer (`scripts/fuzz.sh`, target `parse_classify`) found crashing, kept as
//! regression tests: each must go through `understand` without a panic.

use mailroom_core::understand;

/// A multipart whose first part is a message/rfc822 with an empty nested message/rfc822
/// and no closing boundary inside: mail-parser 0.11.9 trips its own
/// `debug_assert!(false, "Invalid part ID, could not find multipart.")` on it.
const NESTED_RFC822_WITHOUT_BOUNDARY: &[u8] = b"Re\n\
Content-Type: multipart/r\n\
\tboundary=\"00222200.2222222222/nyaaan.example.com\"sn\n\
\n\
--00222200.2222222222/nyaaan.example.comContent-Type:message/rfc822\n\
\n\
Content-Type: message/rfc822\n\
\n\
n\n\
\n\
--00222200.2222222222/nyaaan.example.com--\n";

#[test]
fn nested_rfc822_without_boundary_does_not_panic() {
    let result =
        std::panic::catch_unwind(|| understand(NESTED_RFC822_WITHOUT_BOUNDARY).map(|u| u.message.kind));
    // Parsed leniently: not a panic, and not the parser-panic error `understand` turns one into.
    match result {
        Ok(Ok(kind)) => eprintln!("parsed as {kind:?}"),
        Ok(Err(e)) => panic!("refused: {e}"),
        Err(_) => panic!("understand panicked"),
    }
}
