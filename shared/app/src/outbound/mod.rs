pub mod attach;
pub mod digest;
pub mod notify;
pub mod relay;
pub mod reply;
pub mod send;
pub mod track;
