//! The JSON document of a management message: `Header`, `Request`, and in replies `Response`
//! and `Outcome`. Keys are written sorted, as upstream writes them.

use serde_json::{json, Map, Value};

use crate::error::{Result, WireError};

/// The version a client reports in `Header.ClientVersion`: the management protocol version of
/// upstream pgmoneta this implementation speaks.
pub const CLIENT_VERSION: &str = "0.22.0";

/// A management command, with upstream's ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // named after the commands
pub enum Command {
    Unknown,
    Backup,
    ListBackup,
    Restore,
    Archive,
    Delete,
    Shutdown,
    Status,
    StatusDetails,
    Ping,
    Reset,
    Reload,
    Retain,
    Expunge,
    Decrypt,
    Encrypt,
    Decompress,
    Compress,
    Info,
    Verify,
    Annotate,
    ConfLs,
    ConfGet,
    ConfSet,
    Mode,
    Progress,
    S3Ls,
    S3Restore,
    /// Not upstream's: the cluster's nodes and roles (an id outside upstream's range).
    ClusterStatus,
    /// Not upstream's: the facts a monitoring check reads (see [`super::check`]).
    Check,
}

const COMMANDS: [(Command, u32, &str); 30] = [
    (Command::Unknown, 0, "unknown"),
    (Command::Backup, 1, "backup"),
    (Command::ListBackup, 2, "list-backup"),
    (Command::Restore, 3, "restore"),
    (Command::Archive, 4, "archive"),
    (Command::Delete, 5, "delete"),
    (Command::Shutdown, 6, "shutdown"),
    (Command::Status, 7, "status"),
    (Command::StatusDetails, 8, "status details"),
    (Command::Ping, 9, "ping"),
    (Command::Reset, 10, "reset"),
    (Command::Reload, 11, "reload"),
    (Command::Retain, 12, "retain"),
    (Command::Expunge, 13, "expunge"),
    (Command::Decrypt, 14, "decrypt"),
    (Command::Encrypt, 15, "encrypt"),
    (Command::Decompress, 16, "decompress"),
    (Command::Compress, 17, "compress"),
    (Command::Info, 18, "info"),
    (Command::Verify, 19, "verify"),
    (Command::Annotate, 20, "annotate"),
    (Command::ConfLs, 21, "conf ls"),
    (Command::ConfGet, 22, "conf get"),
    (Command::ConfSet, 23, "conf set"),
    (Command::Mode, 24, "mode"),
    (Command::Progress, 25, "progress"),
    (Command::S3Ls, 200, "s3 ls"),
    (Command::S3Restore, 201, "s3 restore"),
    (Command::ClusterStatus, 1000, "cluster status"),
    (Command::Check, 1001, "check"),
];

impl Command {
    /// Upstream's id.
    pub fn id(self) -> u32 {
        COMMANDS.iter().find(|c| c.0 == self).map_or(0, |c| c.1)
    }

    /// The command for an id; unknown ids give [`Command::Unknown`].
    pub fn from_id(id: u32) -> Command {
        COMMANDS.iter().find(|c| c.1 == id).map_or(Command::Unknown, |c| c.0)
    }

    /// The command's name as `pgmoneta-cli` spells it.
    pub fn name(self) -> &'static str {
        COMMANDS.iter().find(|c| c.0 == self).map_or("unknown", |c| c.2)
    }
}

/// How the client wants the answer printed (`Header.Output`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// 0: text.
    Text,
    /// 1: JSON.
    Json,
    /// 2: raw.
    Raw,
}

impl OutputFormat {
    fn code(self) -> u8 {
        match self {
            OutputFormat::Text => 0,
            OutputFormat::Json => 1,
            OutputFormat::Raw => 2,
        }
    }

    fn from_code(code: u64) -> OutputFormat {
        match code {
            1 => OutputFormat::Json,
            2 => OutputFormat::Raw,
            _ => OutputFormat::Text,
        }
    }
}

/// `Header`: what the client sends about itself and the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The command.
    pub command: Command,
    /// The raw command id (kept as received, for an unknown command's error).
    pub command_id: u32,
    /// The client's version.
    pub client_version: String,
    /// Output format.
    pub output: OutputFormat,
    /// Client local time, `YYYYMMDDhhmmss`.
    pub timestamp: String,
    /// Compression code the client used.
    pub compression: u8,
    /// Encryption code the client used.
    pub encryption: u8,
}

/// `Outcome`: success with the elapsed time, or an error code.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Whether the command succeeded.
    pub status: bool,
    /// Elapsed time, `HH:MM:SS.ffff` (success).
    pub time: Option<String>,
    /// Error code (failure).
    pub error: Option<u32>,
    /// The failing workflow's name (failure).
    pub workflow: Option<String>,
    /// Per-worker errors, when a workflow reports them.
    pub worker_errors: Option<Vec<Value>>,
    /// What went wrong, in words (failure; `Message`). An extension of this implementation:
    /// upstream's clients ignore it.
    pub message: Option<String>,
}

impl Outcome {
    /// A success after `seconds`.
    pub fn success(seconds: f64) -> Outcome {
        let total = seconds.max(0.0);
        let h = (total / 3600.0) as u64;
        let m = ((total % 3600.0) / 60.0) as u64;
        let s = total % 60.0;
        Outcome {
            status: true,
            time: Some(format!("{h:02}:{m:02}:{s:.4}")),
            error: None,
            workflow: None,
            worker_errors: None,
            message: None,
        }
    }

    /// A failure with `code`, in `workflow` if any.
    pub fn failure(code: u32, workflow: Option<&str>) -> Outcome {
        Outcome {
            status: false,
            time: None,
            error: Some(code),
            workflow: workflow.map(str::to_owned),
            worker_errors: None,
            message: None,
        }
    }

    /// The same failure, explained by `message`.
    pub fn with_message(mut self, message: impl Into<String>) -> Outcome {
        self.message = Some(message.into());
        self
    }
}

/// A whole management document.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// `Header`.
    pub header: Header,
    /// `Request`: the command's arguments.
    pub request: Map<String, Value>,
    /// `Response`, in replies.
    pub response: Option<Map<String, Value>>,
    /// `Outcome`, in replies.
    pub outcome: Option<Outcome>,
}

fn bad(what: impl Into<String>) -> WireError {
    WireError::Management(what.into())
}

impl Document {
    /// A request for `command` with `request` arguments, stamped with the client's local time.
    pub fn request(command: Command, request: Map<String, Value>, output: OutputFormat, timestamp: &str) -> Document {
        Document {
            header: Header {
                command,
                command_id: command.id(),
                client_version: CLIENT_VERSION.to_owned(),
                output,
                timestamp: timestamp.to_owned(),
                compression: 0,
                encryption: 0,
            },
            request,
            response: None,
            outcome: None,
        }
    }

    /// Compact JSON with sorted keys.
    pub fn to_json(&self) -> String {
        let h = &self.header;
        let mut doc = Map::new();
        doc.insert(
            "Header".into(),
            json!({
                "Command": h.command_id,
                "ClientVersion": h.client_version,
                "Output": h.output.code(),
                "Timestamp": h.timestamp,
                "Compression": h.compression,
                "Encryption": h.encryption,
            }),
        );
        doc.insert("Request".into(), Value::Object(self.request.clone()));
        if let Some(r) = &self.response {
            doc.insert("Response".into(), Value::Object(r.clone()));
        }
        if let Some(o) = &self.outcome {
            let mut m = Map::new();
            m.insert("Status".into(), Value::Bool(o.status));
            if let Some(t) = &o.time {
                m.insert("Time".into(), Value::String(t.clone()));
            }
            if let Some(e) = o.error {
                m.insert("Error".into(), Value::from(e));
            }
            if let Some(w) = &o.workflow {
                m.insert("Workflow".into(), Value::String(w.clone()));
            }
            if let Some(w) = &o.worker_errors {
                m.insert("WorkerErrors".into(), Value::Array(w.clone()));
            }
            if let Some(text) = &o.message {
                m.insert("Message".into(), Value::String(text.clone()));
            }
            doc.insert("Outcome".into(), Value::Object(m));
        }
        Value::Object(doc).to_string()
    }

    /// Parses a document. A missing `Request` reads as empty; unknown keys are ignored.
    ///
    /// # Errors
    /// [`WireError::Management`] for text that is not a JSON object or has no valid `Header`.
    pub fn from_json(text: &str) -> Result<Document> {
        let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| bad("the document is not a JSON object"))?;
        let h = obj.get("Header").and_then(Value::as_object).ok_or_else(|| bad("no Header object"))?;
        let num = |k: &str| h.get(k).and_then(Value::as_u64);
        let command_id = num("Command").ok_or_else(|| bad("Header.Command is missing or not a number"))? as u32;
        let small =
            |k: &str| num(k).map_or(Ok(0), |v| u8::try_from(v).map_err(|_| bad(format!("Header.{k} out of range"))));
        let header = Header {
            command: Command::from_id(command_id),
            command_id,
            client_version: h.get("ClientVersion").and_then(Value::as_str).unwrap_or_default().to_owned(),
            output: OutputFormat::from_code(num("Output").unwrap_or(0)),
            timestamp: h.get("Timestamp").and_then(Value::as_str).unwrap_or_default().to_owned(),
            compression: small("Compression")?,
            encryption: small("Encryption")?,
        };
        let object = |k: &str| -> Result<Option<Map<String, Value>>> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(m.clone())),
                Some(_) => Err(bad(format!("{k} is not an object"))),
            }
        };
        let outcome = object("Outcome")?.map(|o| Outcome {
            status: o.get("Status").and_then(Value::as_bool).unwrap_or(false),
            time: o.get("Time").and_then(Value::as_str).map(str::to_owned),
            error: o.get("Error").and_then(Value::as_u64).map(|e| e as u32),
            workflow: o.get("Workflow").and_then(Value::as_str).map(str::to_owned),
            worker_errors: o.get("WorkerErrors").and_then(Value::as_array).cloned(),
            message: o.get("Message").and_then(Value::as_str).map(str::to_owned),
        });
        Ok(Document { header, request: object("Request")?.unwrap_or_default(), response: object("Response")?, outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_match_upstream() {
        for (id, name) in
            [(1, "backup"), (2, "list-backup"), (9, "ping"), (19, "verify"), (25, "progress"), (201, "s3 restore")]
        {
            assert_eq!(Command::from_id(id).id(), id);
            assert_eq!(Command::from_id(id).name(), name);
        }
        assert_eq!(Command::from_id(77), Command::Unknown);
    }

    #[test]
    fn documents_round_trip_with_sorted_keys() {
        let mut req = Map::new();
        req.insert("Server".into(), "primary".into());
        req.insert("Backup".into(), "newest".into());
        let mut d = Document::request(Command::Info, req, OutputFormat::Json, "20261128120000");
        d.response = Some(Map::from_iter([("ServerVersion".to_owned(), Value::from("0.1.0"))]));
        d.outcome = Some(Outcome::success(3723.5));
        let text = d.to_json();
        assert!(text.starts_with(r#"{"Header":{"ClientVersion":"0.22.0","Command":18,"Compression":0,"Encryption":0,"Output":1,"Timestamp":"20261128120000"},"Outcome":{"Status":true,"Time":"01:02:3.5000"},"Request":{"Backup":"newest","Server":"primary"}"#), "{text}");
        assert_eq!(Document::from_json(&text).unwrap(), d);
        let failed = Outcome::failure(600, Some("Restore")).with_message("no valid backup matches newest");
        d.outcome = Some(failed.clone());
        assert_eq!(Document::from_json(&d.to_json()).unwrap().outcome, Some(failed));
        for bad in ["[]", "{}", r#"{"Header":{"Command":"x"}}"#, "not json", r#"{"Header":{"Command":1},"Request":5}"#]
        {
            assert!(Document::from_json(bad).is_err(), "{bad}");
        }
    }
}
