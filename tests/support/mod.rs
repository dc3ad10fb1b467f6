pub mod crashdump;
pub mod fixture;
pub mod guest;
pub mod hostile;
pub mod patched;
pub mod windows_guest;
