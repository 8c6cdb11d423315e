//! `mailroom bench` (the pipeline: throughput, latency, storage operations),
//! `mailroom bench-report` (report latency at scale) and `mailroom bench-web` (the web
//! inbox's pages at scale): docs/performance.md.

pub mod chat;
pub mod pipeline;
pub mod report;
pub mod web;
