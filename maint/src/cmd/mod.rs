//! The commands of `cargo maint`, one module each.

pub mod bench;
pub mod build;
pub mod guides;
pub mod macos;
pub mod prepare;
pub mod robustness;
pub mod slides;
pub mod soak;
pub mod test;
