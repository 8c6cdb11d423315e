//! `mailroom bench-import` (a multi-gigabyte mbox: memory and resume), `mailroom bench` (the pipeline: throughput, latency, storage operations),
//! `mailroom bench-report` (report latency at scale) and `mailroom bench-web` (the web
//! inbox's pages at scale): docs/performance.md; `mailroom bench-partitions` (write units
//! per DynamoDB partition at a daily volume): docs/scale.md.

pub mod chat;
pub mod import;
pub mod partitions;
pub mod pipeline;
pub mod report;
pub mod web;
