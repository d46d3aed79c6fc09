//! Closed WAL segments mapped into memory, for decoding without copying them.

use std::fs::File;
use std::io;
use std::path::Path;

use bytes::Bytes;

/// The contents of a closed (complete, no longer written) WAL file, mapped read-only from the
/// page cache; files smaller than a page, and empty ones, are read instead.
///
/// # Errors
/// When the file cannot be opened or mapped.
#[allow(unsafe_code)]
pub fn map_closed_file(path: &Path) -> io::Result<Bytes> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < 4096 {
        return std::fs::read(path).map(Bytes::from);
    }
    // SAFETY: the mapping is read-only and only made for closed files: complete WAL segments
    // and archived files, which PostgreSQL and pgmoneta never write again in place (they are
    // replaced by rename). A file truncated by someone else while mapped would make reads fault;
    // callers must not map a `.partial` segment that a receiver is still writing.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file)? };
    Ok(Bytes::from_owner(map))
}
