//! Every integration test of the workspace in one binary: one link instead of one per
//! file (docs/architecture.md, "The test loop").

mod api;
mod apply;
mod audit;
mod bench_table;
mod bootstrap;
mod chat;
mod chat_lambda;
mod connections;
mod contract;
mod crm;
mod demo;
mod deployed;
mod gmail;
mod graph;
mod imap;
mod import;
mod lambda;
mod logging;
mod notify;
mod parse;
mod replay;
mod replies;
mod reports;
mod scale;
mod schemathesis;
mod security;
mod settings;
mod template;
mod threading;
mod tracking;
mod verify;
mod web;
