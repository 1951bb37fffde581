//! The `mover` subcommands.
