//! The whole parse path (`understand`: mail-parser, normalisation, quote splitting, HTML
//! sanitising, classification, attachments) on every message of every public corpus
//! folder, read in place from `../shared/corpus`: nothing may panic, and everything but
//! empty input must parse.

use mailroom_core::{ParseError, understand};
use std::path::{Path, PathBuf};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus");

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if !matches!(
            p.file_name().and_then(|n| n.to_str()),
            Some("LICENSE" | "expected.json" | "README.md")
        ) {
            out.push(p);
        }
    }
}

#[test]
fn every_corpus_message_parses_without_panic() {
    let root = Path::new(CORPUS);
    assert!(root.is_dir(), "{} is missing: the shared corpus must sit beside the project", root.display());
    let mut all = Vec::new();
    files(root, &mut all);
    all.sort();
    let (mut ok, mut empty, mut panics, mut attachments) = (0, 0, Vec::new(), 0);
    for f in &all {
        let raw = std::fs::read(f).unwrap();
        match std::panic::catch_unwind(|| understand(&raw)) {
            Ok(Ok(u)) => {
                ok += 1;
                attachments += u.message.attachments.len();
                assert_eq!(u.message.attachments.len(), u.bodies.len());
                for (a, b) in u.message.attachments.iter().zip(&u.bodies) {
                    assert_eq!(a.size as usize, b.len(), "{}", f.display());
                }
            }
            Ok(Err(ParseError::Empty)) => empty += 1,
            Ok(Err(e)) => panic!("{}: {e}", f.display()),
            Err(_) => panics.push(f.display().to_string()),
        }
    }
    eprintln!(
        "{} files: {ok} parsed ({attachments} attachments), {empty} empty, {} panics",
        all.len(),
        panics.len()
    );
    assert!(all.len() > 600, "only {} corpus files found", all.len());
    assert!(panics.is_empty(), "panicked on: {panics:#?}");
    assert_eq!(ok + empty, all.len());
}
