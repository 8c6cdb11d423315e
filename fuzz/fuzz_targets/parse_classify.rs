//! Fuzzes the whole parse path the match stage runs on untrusted mail: mail-parser,
//! normalisation, quote splitting, HTML sanitising, classification (bounce scanning
//! included), subject analysis and signed-id checks. Run with
//! `scripts/fuzz.sh [seconds]` (seeds from ../shared/corpus).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_core::{ThreadSigner, subject, understand};

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = understand(data) {
        let m = &u.message;
        assert_eq!(m.attachments.len(), u.bodies.len());
        let _ = subject::analyse(&m.subject);
        let signer = ThreadSigner::new(b"fuzz-key".to_vec());
        for p in m.parent_ids() {
            assert!(signer.verify_message_id(&p).is_none() || p.starts_with("mr."));
        }
        let _ = signer.find_body_marker(&m.text);
        let _ = mailroom_core::Envelope::read(data);
    }
});
