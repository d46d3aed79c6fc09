//! The command-line tools: `pgmoneta-cli` (drives the daemon over the management protocol),
//! `pgmoneta-admin` (master key and user vaults) and `pgmoneta-walinfo` (decodes WAL).
//!
//! Nothing is public yet; each binary is added with the commands it serves.
