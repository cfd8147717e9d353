//! The commands of `cargo xtask`, one module each. `main.rs` parses the
//! command line (each module declares its own options) and calls the
//! module's `run`.

pub mod bench;
pub mod build;
pub mod check;
pub mod doctor;
pub mod down;
pub mod guides;
pub mod macos;
pub mod prepare;
pub mod reset;
pub mod robustness;
pub mod slides;
pub mod soak;
pub mod test;
pub mod tree;
pub mod up;

use crate::catalogue::stage_named;
use crate::say;

/// The stage a command line names (`step02`, `2`…), with the fix when it
/// names none: the parser of a STAGE argument.
pub fn stage_argument(name: &str) -> Result<&'static str, String> {
    stage_named(name).ok_or_else(|| {
        say!(
            "there is no stage {name:?}: name one of step01, step02, step03, step04",
            "段階 {name:?} はありません。step01、step02、step03、step04 のどれかを指定してください"
        )
    })
}
