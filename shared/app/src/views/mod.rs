pub mod conversations;
pub mod crm;
pub mod stats;
