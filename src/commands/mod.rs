//! One module per subcommand.

pub mod embed;
pub mod generate;
pub mod info;
