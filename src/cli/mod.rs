//! Subcommands with more than a few lines of their own: `demo`, `tail`, `ringcentral`,
//! `replay` and `calls` (`archive`).

pub mod archive;
pub mod demo;
pub mod ringcentral;
pub mod tail;
