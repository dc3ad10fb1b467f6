pub mod crashdump;
pub mod fixture;
pub mod guest;
pub mod hostile;
pub mod linux;
pub mod patched;
pub mod traced;
pub mod windows_guest;
