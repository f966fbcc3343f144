//! One module per subcommand.

pub mod bench;
pub mod compare;
pub mod curve;
pub mod data;
pub mod embed;
pub mod eval;
pub mod export;
pub mod generate;
pub mod info;
pub mod topology;
pub mod train;
