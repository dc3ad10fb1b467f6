//! The `xenvmi` command.
