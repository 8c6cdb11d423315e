//! `mailroom bench` (the pipeline: throughput, latency, storage operations) and
//! `mailroom bench-report` (report latency at scale): docs/performance.md.

pub mod pipeline;
pub mod report;
