pub mod notify;
pub mod relay;
pub mod send;
pub mod track;
