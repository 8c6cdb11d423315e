pub mod connection;
pub mod gmail;
pub mod graph;
pub mod imap;
pub mod oauth;
pub mod routes;
pub mod schedule;
pub mod sync;
