//! Compression for backups, WAL and management frames.
//!
//! This crate owns streaming `Write` encoders and `Read` decoders for gzip, zstd, lz4 (frame format,
//! plus the block stream older pgmoneta versions wrote) and bzip2, buffer helpers built on them, and
//! the mapping between algorithms, file suffixes (`.gz`, `.zstd`, `.lz4`, `.bz2`) and magic bytes.
//!
//! Nothing is public yet: the codecs arrive together with their round-trip and corruption tests.
