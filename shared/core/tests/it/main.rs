//! The core crate's integration tests in one binary.

mod classify_synthetic;
mod corpus_bounces;
mod corpus_other;
mod corpus_understand;
mod fuzz_regressions;
mod parse_legacy;
mod routing_synthetic;
