//! A small ustar reader for checking what BASE_BACKUP streams (the repository has its own).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(String),
    Other(u8),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub data: Vec<u8>,
}

fn field(h: &[u8], range: std::ops::Range<usize>) -> String {
    let raw = &h[range];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn octal(h: &[u8], range: std::ops::Range<usize>) -> u64 {
    let raw = &h[range.clone()];
    if raw[0] & 0x80 != 0 {
        // base-256 for large values
        return raw[1..].iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    }
    let text = field(h, range);
    u64::from_str_radix(text.trim(), 8).unwrap_or_else(|_| panic!("bad octal field {text:?}"))
}

/// Every entry of a tar archive, checking header checksums and the end marker.
pub fn read(archive: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        assert!(pos + 512 <= archive.len(), "tar archive ends without the end-of-archive blocks");
        let h = &archive[pos..pos + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let sum: u64 =
            h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum();
        assert_eq!(sum, octal(h, 148..156), "header checksum at offset {pos}");
        let mut path = field(h, 0..100);
        let prefix = field(h, 345..500);
        if !prefix.is_empty() {
            path = format!("{prefix}/{path}");
        }
        let size = octal(h, 124..136) as usize;
        let kind = match h[156] {
            b'0' | 0 => Kind::File,
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink(field(h, 157..257)),
            other => Kind::Other(other),
        };
        pos += 512;
        let data = archive[pos..pos + size].to_vec();
        pos += size.div_ceil(512) * 512;
        out.push(Entry { path: path.trim_end_matches('/').to_owned(), kind, data });
    }
    out
}
