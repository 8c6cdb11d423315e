//! Criterion benchmarks of the parse-classify-thread core, on a gen_corpus.py mailbox
//! (generated into a temporary directory; python3 and ../shared/tools/gen_corpus.py are
//! needed, as for the tests):
//!
//! - `understand`: mail-parser parse, normalisation, quote split, classification, per
//!   message (no storage);
//! - `match_stage`: the match stage on embedded storage (parse, classify, store the parsed
//!   form and attachments, record the message, thread it), per message, on a fresh data
//!   directory each iteration.
//!
//! `cargo bench -p mailroom-app --bench core`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mailroom_app::{Ingestor, MatchHandler, Ports, RawMail, Worker};
use std::path::PathBuf;
use std::sync::Arc;

fn corpus() -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/gen_corpus.py");
    assert!(script.is_file(), "{} is missing (the shared tools beside this checkout)", script.display());
    let st = std::process::Command::new("python3")
        .arg(&script)
        .args(["--conversations", "100", "--seed", "3", "--quiet", "--out"])
        .arg(dir.path())
        .status()
        .expect("python3 is needed to generate the corpus");
    assert!(st.success(), "gen_corpus.py failed");
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("messages"))
        .expect("messages/")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let messages = files.iter().map(|p| std::fs::read(p).expect("read")).collect();
    (dir, messages)
}

fn bench(c: &mut Criterion) {
    let (_dir, messages) = corpus();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");

    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(messages.len() as u64));
    g.sample_size(10);
    g.bench_function("understand", |b| {
        b.iter(|| {
            for m in &messages {
                std::hint::black_box(mailroom_core::understand(m).ok());
            }
        })
    });
    g.bench_function("match_stage", |b| {
        b.iter_batched(
            || {
                // Not timed: a fresh directory with every message ingested.
                let data = tempfile::tempdir().expect("tempdir");
                let ports = Ports::embedded(data.path()).expect("embedded");
                let ing = Ingestor::new(ports.clone());
                rt.block_on(async {
                    for m in &messages {
                        // A Sent copy whose inbox only its parent tells is left out.
                        match ing.ingest(RawMail::new(m.clone(), "bench")).await {
                            Ok(_) | Err(mailroom_app::IngestError::UnknownInbox { .. }) => {}
                            Err(e) => panic!("ingest: {e}"),
                        }
                    }
                });
                let w = Worker::new(ports.ingest_queue.clone(), Arc::new(MatchHandler::new(ports.clone())));
                (data, w)
            },
            |(data, w)| {
                let r = rt.block_on(w.drain()).expect("drain");
                assert_eq!(r.failed, 0);
                data
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
