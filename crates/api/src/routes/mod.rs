pub mod audit;
pub mod auth;
pub mod groups;
pub mod inventory;
pub mod me;
pub mod policies;
pub mod system;
pub mod users;
