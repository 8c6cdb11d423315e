pub mod ingest;
pub mod matcher;
pub mod route;
pub mod ticket;
