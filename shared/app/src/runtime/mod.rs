pub mod config;
pub mod consumer;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod ports;
pub mod telemetry;
