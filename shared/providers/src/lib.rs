//! Mailbox providers: the protocol clients the sources use. No storage here: the use
//! cases in `mailroom-app` decide what to store, these modules only speak the protocols.

pub mod gmail;
pub mod graph;
pub mod imap;
pub mod jwt;
pub mod net;
pub mod smtp;
