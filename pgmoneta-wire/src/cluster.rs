//! The cluster protocol: how pgmoneta nodes talk to each other on their cluster port.
//!
//! It uses the management protocol's frame ([`crate::management::Frame`]: compression code,
//! encryption code, big-endian 32-bit length, payload) over TCP, after an `SSLRequest` and TLS
//! and a SCRAM-SHA-256 exchange against the admins vault, as remote management does. Each
//! payload is one JSON [`Message`], tagged by its `Type`, with the names upstream's documents
//! use (`PascalCase`). Fields a node does not know are ignored, so nodes of different
//! versions talk as long as [`PROTOCOL_VERSION`] matches.
//!
//! Every exchange is a **write**: the client sends one message and the server answers with one
//! ([`Message::Hello`] → [`Message::Welcome`], [`Message::Heartbeat`] → [`Message::Heartbeat`],
//! [`Message::Catalog`] → [`Message::CatalogReply`], [`Message::Files`] →
//! [`Message::FilesReply`], [`Message::WalList`] → [`Message::WalListReply`],
//! [`Message::Fetch`] → [`Message::Chunk`], [`Message::Forward`] → [`Message::Forwarded`]);
//! any request may be answered with [`Message::Error`]. Followers pull: they ask for the
//! catalog and the WAL listing every heartbeat, so nothing is pushed.
//!
//! File data does not travel inside JSON: a [`Message::Chunk`] is followed by one frame whose
//! payload is the chunk's bytes, exactly [`Chunk::length`] of them (compression and encryption
//! codes 0). See `docs/clustering.md` for every message with examples.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::{Result, WireError};
use crate::management::{read_frame, write_frame, Frame};

/// The version of this protocol; a peer speaking another is refused at [`Message::Hello`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest chunk a [`Message::Fetch`] may ask for.
pub const MAX_CHUNK: u64 = 8 << 20;

/// What a node is for one server; see the daemon's role state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Streams the server's WAL from its slot and takes its backups.
    Active,
    /// Copies from the active node.
    Follower,
    /// Trying to take the server's slot (no active node was heard from in time).
    Claiming,
    /// Was active and lost the server: writes nothing for it until it holds the slot again.
    Fenced,
}

/// One node's view of one server, sent in every heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServerView {
    /// The server's section name.
    pub server: String,
    /// This node's role for it.
    pub role: Option<Role>,
    /// The timeline of the newest segment in this node's archive.
    pub timeline: u32,
    /// Where this node's WAL archive for the server ends (the first byte it does not hold), as
    /// `X/X`; `0/0` when it holds none.
    #[serde(rename = "ArchiveEnd")]
    pub archive_end: String,
    /// The labels of the valid backups this node holds, oldest first.
    pub backups: Vec<String>,
    /// The labels of backups this node is writing or sending right now: no node deletes them.
    pub busy: Vec<String>,
}

/// A node's view, as its heartbeat carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeView {
    /// The node's name (`cluster_node`).
    pub node: String,
    /// Its clock, seconds since 1970 (to show skew; never used to decide).
    pub time: i64,
    /// One entry per configured server.
    pub servers: Vec<ServerView>,
}

/// A backup as the catalog lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogEntry {
    /// Its label.
    pub backup: String,
    /// Complete and valid on the node.
    pub valid: bool,
    /// Retained (`retain`) and not removed by retention.
    pub keep: bool,
    /// The stored bytes.
    pub backup_size: u64,
    /// The annotations, as `backup.info` holds them.
    pub comments: String,
    /// The parent of an incremental backup, empty for a full one.
    pub incremental_parent: String,
}

/// A stored file to fetch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FileEntry {
    /// Relative path.
    pub path: String,
    /// Bytes as stored.
    pub size: u64,
    /// SHA-512 of the stored bytes, hex (as `backup.sha512` lists them).
    pub sha512: String,
    /// When the file is a link to another backup's file (an unchanged file of a newer
    /// backup), where it points: the path under the server's directory
    /// (`backup/<label>/data/...`). A node that holds that file links to its own copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// A chunk of a file, answering [`Message::Fetch`]; its bytes follow in the next frame.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Chunk {
    /// The file, as asked for.
    pub path: String,
    /// Where the chunk starts.
    pub offset: u64,
    /// Bytes in the chunk (0 at or after the end).
    pub length: u64,
    /// The file's size (a file that grew since it was listed is a WAL segment being sealed
    /// again: the receiver lists again).
    pub size: u64,
}

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "Type", rename_all = "PascalCase")]
pub enum Message {
    /// The first message of a connection, after authentication.
    Hello {
        /// The client node's name.
        #[serde(rename = "Node")]
        node: String,
        /// Its [`PROTOCOL_VERSION`].
        #[serde(rename = "Version")]
        version: u32,
        /// The fingerprint of its master key, when it has one: nodes that copy each other's
        /// encrypted backups and WAL must hold the same key.
        #[serde(rename = "Key", default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// The answer to [`Message::Hello`].
    Welcome {
        /// The server node's name.
        #[serde(rename = "Node")]
        node: String,
        /// Its [`PROTOCOL_VERSION`].
        #[serde(rename = "Version")]
        version: u32,
    },
    /// A node's view; answered with the other node's view.
    Heartbeat(NodeView),
    /// Asks for the catalog of one server.
    Catalog {
        /// The server.
        #[serde(rename = "Server")]
        server: String,
    },
    /// The catalog of a server, oldest backup first.
    CatalogReply {
        /// The server.
        #[serde(rename = "Server")]
        server: String,
        /// Its backups.
        #[serde(rename = "Backups", default)]
        backups: Vec<CatalogEntry>,
        /// Backups this node deleted (a delete, retention) while active for the server,
        /// newest last: a follower that holds one deletes it the same way.
        #[serde(rename = "Deleted", default, skip_serializing_if = "Vec::is_empty")]
        deleted: Vec<String>,
    },
    /// Asks for the files of one backup.
    Files {
        /// The server.
        #[serde(rename = "Server")]
        server: String,
        /// The backup's label.
        #[serde(rename = "Backup")]
        backup: String,
    },
    /// The stored files of a backup, relative to its directory, `backup.info` last (a copied
    /// backup becomes valid last).
    FilesReply {
        /// The server.
        #[serde(rename = "Server")]
        server: String,
        /// The backup's label.
        #[serde(rename = "Backup")]
        backup: String,
        /// The files.
        #[serde(rename = "Files", default)]
        files: Vec<FileEntry>,
    },
    /// Asks for the WAL archive's files of a server after a name (empty: from the start).
    WalList {
        /// The server.
        #[serde(rename = "Server")]
        server: String,
        /// Only files whose plain name sorts after this one.
        #[serde(rename = "After", default)]
        after: String,
    },
    /// The sealed WAL files (and history files) of a server, by name.
    WalListReply {
        /// The server.
        #[serde(rename = "Server")]
        server: String,
        /// The files, with their stored names.
        #[serde(rename = "Files", default)]
        files: Vec<FileEntry>,
    },
    /// Asks for a chunk of a stored file of a server: `backup/<label>/<path>` or `wal/<name>`.
    Fetch {
        /// The server.
        #[serde(rename = "Server")]
        server: String,
        /// The file, relative to the server's directory.
        #[serde(rename = "Path")]
        path: String,
        /// Where to start.
        #[serde(rename = "Offset", default)]
        offset: u64,
        /// How many bytes at most (at most [`MAX_CHUNK`]).
        #[serde(rename = "Length")]
        length: u64,
    },
    /// A chunk; its bytes follow in the next frame.
    Chunk(Chunk),
    /// A management request for a server this node is not active for, sent on to the active
    /// node: the management document as the client sent it.
    Forward {
        /// The management document.
        #[serde(rename = "Document")]
        document: serde_json::Value,
    },
    /// The active node's management reply to a [`Message::Forward`].
    Forwarded {
        /// The management document.
        #[serde(rename = "Document")]
        document: serde_json::Value,
    },
    /// A request that failed, and why.
    Error {
        /// A short, stable word (`unknown-server`, `not-found`, `version`, `refused`...).
        #[serde(rename = "Code")]
        code: String,
        /// For the operator.
        #[serde(rename = "Message")]
        message: String,
    },
}

impl Message {
    /// The message as frame payload (compact JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            // Every field is a string, number, list or map: serialising cannot fail.
            unreachable!("a cluster message did not serialise: {e}")
        })
    }

    /// Reads a message from a frame's payload.
    ///
    /// # Errors
    /// [`WireError::Management`] naming what is wrong: not JSON, no or an unknown `Type`, a
    /// field of the wrong type.
    pub fn from_json(text: &[u8]) -> Result<Message> {
        serde_json::from_slice(text).map_err(|e| WireError::Management(format!("cluster message: {e}")))
    }
}

/// Sends one message.
///
/// # Errors
/// The connection's.
pub fn send<W: Write + ?Sized>(w: &mut W, message: &Message) -> Result<()> {
    write_frame(w, &Frame { compression: 0, encryption: 0, payload: message.to_json().into_bytes() })
}

/// Receives one message.
///
/// # Errors
/// The connection's; a frame that is compressed or encrypted (nodes send plain frames inside
/// TLS) or that does not hold a message.
pub fn receive<R: Read + ?Sized>(r: &mut R) -> Result<Message> {
    let frame = read_frame(r)?;
    if frame.compression != 0 || frame.encryption != 0 {
        return Err(WireError::Management("cluster frames are neither compressed nor encrypted".into()));
    }
    Message::from_json(&frame.payload)
}

/// Sends a [`Message::Chunk`] and the frame with its bytes.
///
/// # Errors
/// The connection's; `data` of another length than the chunk says.
pub fn send_chunk<W: Write + ?Sized>(w: &mut W, chunk: Chunk, data: &[u8]) -> Result<()> {
    if data.len() as u64 != chunk.length {
        return Err(WireError::Usage(format!("a chunk of {} bytes with {} bytes of data", chunk.length, data.len())));
    }
    send(w, &Message::Chunk(chunk))?;
    write_frame(w, &Frame { compression: 0, encryption: 0, payload: data.to_vec() })
}

/// Receives the bytes that follow a [`Message::Chunk`].
///
/// # Errors
/// The connection's; a frame of another length than the chunk said.
pub fn receive_chunk_data<R: Read + ?Sized>(r: &mut R, chunk: &Chunk) -> Result<Vec<u8>> {
    let frame = read_frame(r)?;
    if frame.payload.len() as u64 != chunk.length || frame.compression != 0 || frame.encryption != 0 {
        return Err(WireError::Management(format!(
            "the data of {} at {} has {} bytes, the chunk said {}",
            chunk.path,
            chunk.offset,
            frame.payload.len(),
            chunk.length
        )));
    }
    Ok(frame.payload)
}

/// Reads frames from `data` as a node reads a peer's stream, and asserts: no panic; every
/// message that parses is written back as JSON that parses to the same message, and writes the
/// same text again; the bytes after a chunk are taken only when the frame is exactly the
/// chunk's length. Checked by the fuzz target `cluster_message` and by the test that replays
/// its seed corpus.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_messages(data: &[u8]) {
    let mut input = data;
    while let Ok(message) = receive(&mut input) {
        let written = message.to_json();
        let again = Message::from_json(written.as_bytes()).expect("a written message parses");
        assert_eq!(again, message, "the message does not survive a round trip");
        assert_eq!(again.to_json(), written);
        if let Message::Chunk(chunk) = &message {
            match receive_chunk_data(&mut input, chunk) {
                Ok(bytes) => assert_eq!(bytes.len() as u64, chunk.length),
                // A node drops the connection there.
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(sent: serde_json::Value) -> Message {
        let text = sent.to_string();
        let m = Message::from_json(text.as_bytes()).unwrap();
        let again: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(Message::from_json(again.to_string().as_bytes()).unwrap(), m, "{text}");
        m
    }

    #[test]
    fn every_message_reads_as_documented_and_writes_back() {
        let hello = round_trip(json!({"Type": "Hello", "Node": "b", "Version": 1}));
        assert_eq!(hello, Message::Hello { node: "b".into(), version: 1, key: None });
        round_trip(json!({"Type": "Welcome", "Node": "a", "Version": 1}));
        let hb = round_trip(json!({
            "Type": "Heartbeat", "Node": "a", "Time": 1_765_000_000,
            "Servers": [{"Server": "primary", "Role": "active", "Timeline": 1, "ArchiveEnd": "0/5000000",
                         "Backups": ["20261206120000"], "Busy": []}]
        }));
        let Message::Heartbeat(view) = hb else { panic!() };
        assert_eq!(view.servers[0].role, Some(Role::Active));
        assert_eq!(view.servers[0].archive_end, "0/5000000");
        round_trip(json!({"Type": "Catalog", "Server": "primary"}));
        let catalog = round_trip(json!({
            "Type": "CatalogReply", "Server": "primary",
            "Backups": [{"Backup": "20261206120000", "Valid": true, "Keep": false, "BackupSize": 1234,
                         "Comments": "", "IncrementalParent": ""}]
        }));
        let Message::CatalogReply { backups, .. } = catalog else { panic!() };
        assert_eq!((backups[0].backup.as_str(), backups[0].backup_size), ("20261206120000", 1234));
        round_trip(json!({"Type": "Files", "Server": "primary", "Backup": "20261206120000"}));
        let files = round_trip(json!({"Type": "FilesReply", "Server": "primary", "Backup": "20261206120000",
                                      "Files": [{"Path": "data/base/1/1259.zstd", "Size": 10, "Sha512": "ab"},
                                                {"Path": "data/base/1/1249.zstd", "Size": 12, "Sha512": "cd",
                                                 "Link": "backup/20261205120000/data/base/1/1249.zstd"}]}));
        let Message::FilesReply { files, .. } = files else { panic!() };
        assert_eq!((files[0].path.as_str(), files[0].link.as_deref()), ("data/base/1/1259.zstd", None));
        assert_eq!(files[1].link.as_deref(), Some("backup/20261205120000/data/base/1/1249.zstd"));
        round_trip(json!({"Type": "WalList", "Server": "primary", "After": "000000010000000000000003"}));
        round_trip(json!({"Type": "WalListReply", "Server": "primary",
                          "Files": [{"Path": "000000010000000000000004.zstd", "Size": 99, "Sha512": "cd"}]}));
        round_trip(json!({"Type": "Fetch", "Server": "primary", "Path": "wal/000000010000000000000004.zstd",
                          "Offset": 0, "Length": 1_048_576}));
        round_trip(json!({"Type": "Chunk", "Path": "wal/x", "Offset": 0, "Length": 99, "Size": 99}));
        round_trip(
            json!({"Type": "Forward", "Document": {"Header": {"Command": 1}, "Request": {"Server": "primary"}}}),
        );
        round_trip(json!({"Type": "Forwarded", "Document": {"Outcome": {"Status": true}}}));
        round_trip(json!({"Type": "Error", "Code": "unknown-server", "Message": "no server named \"x\""}));
    }

    #[test]
    fn unknown_fields_are_ignored_and_bad_messages_are_named() {
        let m = round_trip(json!({"Type": "Hello", "Node": "b", "Version": 1, "Future": [1, 2]}));
        assert_eq!(m, Message::Hello { node: "b".into(), version: 1, key: None });
        for (bad, says) in [
            (json!({"Node": "b"}), "Type"),
            (json!({"Type": "Dance"}), "Dance"),
            (json!({"Type": "Hello", "Node": 7, "Version": 1}), "invalid type"),
            (json!({"Type": "Fetch", "Server": "p", "Path": "x"}), "Length"),
        ] {
            let e = Message::from_json(bad.to_string().as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("bad management payload: cluster message: ") && e.contains(says), "{e}");
        }
        assert!(Message::from_json(b"not json").is_err());
    }

    #[test]
    fn messages_and_chunks_travel_in_frames() {
        let mut wire = Vec::new();
        send(&mut wire, &Message::Catalog { server: "p".into() }).unwrap();
        let chunk = Chunk { path: "wal/x".into(), offset: 4, length: 3, size: 7 };
        send_chunk(&mut wire, chunk.clone(), b"abc").unwrap();
        assert!(send_chunk(&mut Vec::new(), chunk.clone(), b"ab").is_err());
        let mut r = wire.as_slice();
        assert_eq!(receive(&mut r).unwrap(), Message::Catalog { server: "p".into() });
        let Message::Chunk(got) = receive(&mut r).unwrap() else { panic!() };
        assert_eq!(got, chunk);
        assert_eq!(receive_chunk_data(&mut r, &got).unwrap(), b"abc");
        assert!(r.is_empty());
        // A compressed frame is refused.
        let mut w = Vec::new();
        write_frame(&mut w, &Frame { compression: 1, encryption: 0, payload: b"{}".to_vec() }).unwrap();
        assert!(receive(&mut w.as_slice()).unwrap_err().to_string().contains("neither compressed"));
    }
}
