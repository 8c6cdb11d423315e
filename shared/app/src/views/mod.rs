pub mod crm;
pub mod stats;
