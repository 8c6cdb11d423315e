pub mod config;
pub mod consumer;
pub mod ports;
pub mod telemetry;
