pub mod fixture;
pub mod guest;
