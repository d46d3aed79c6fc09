//! Object storage (S3 and S3-compatible servers, Azure Blob, Google Cloud Storage) as a
//! [`Store`], through the `object_store` crate.
//!
//! Repository paths become object names under a prefix. Object stores have no directories: a
//! directory exists while some object's name starts with it, `create_dir` does nothing, and
//! removing a directory deletes every object under it. Files are written whole or not at all:
//! one `PUT` for a small file, a multipart upload in [`RemoteTuning::part_size`] parts (at most
//! [`RemoteTuning::part_concurrency`] in flight) for a large one, completed by
//! [`StoreWriter::commit`] and aborted when the writer is dropped.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, Attributes, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::runtime::{Handle, Runtime};

use super::{AzureOptions, GcsOptions, RemoteTuning, S3Options};
use crate::error::{Result, StorageError};
use crate::store::{EntryKind, Store, StoreEntry, StoreWriter};

/// The runtime every object store's requests run on: two threads, shared by all stores.
fn runtime() -> Result<Handle> {
    static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pgmoneta-remote")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    match rt {
        Ok(rt) => Ok(rt.handle().clone()),
        Err(e) => Err(StorageError::Invalid(format!("cannot start the remote storage runtime: {e}"))),
    }
}

fn retry(tuning: &RemoteTuning) -> RetryConfig {
    RetryConfig { max_retries: tuning.max_retries, retry_timeout: tuning.retry_timeout, ..RetryConfig::default() }
}

/// A bucket or container of an object store, under a prefix.
pub struct ObjectStoreRemote {
    /// How errors name the location: `s3://bucket/prefix`.
    location: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    handle: Handle,
    tuning: RemoteTuning,
    attributes: Attributes,
}

impl std::fmt::Debug for ObjectStoreRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreRemote").field("location", &self.location).finish_non_exhaustive()
    }
}

/// The service endpoint `http://host:port` as the bucket's own virtual host,
/// `http://<bucket>.host:port`.
fn bucket_host(endpoint: &str, bucket: &str) -> String {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    format!("{scheme}://{bucket}.{rest}")
}

fn config_error(engine: &str, e: object_store::Error) -> StorageError {
    StorageError::Invalid(format!("{engine} storage settings: {e}"))
}

impl ObjectStoreRemote {
    /// An S3 bucket: AWS (virtual-host addressing) or an S3-compatible server at
    /// [`S3Options::endpoint`] (path-style unless [`S3Options::virtual_hosted`]). Without keys,
    /// the credentials come from the `AWS_*` variables, web identity or the instance metadata.
    ///
    /// # Errors
    /// Settings the client refuses.
    pub fn s3(o: &S3Options, tuning: &RemoteTuning) -> Result<ObjectStoreRemote> {
        use object_store::aws::AmazonS3Builder;
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&o.bucket)
            .with_region(&o.region)
            .with_retry(retry(tuning))
            .with_virtual_hosted_style_request(o.endpoint.is_none() || o.virtual_hosted);
        if let (Some(id), Some(secret)) = (&o.access_key_id, &o.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        if let Some(endpoint) = &o.endpoint {
            let endpoint = if o.virtual_hosted { bucket_host(endpoint, &o.bucket) } else { endpoint.clone() };
            b = b.with_endpoint(&endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        let store = b.build().map_err(|e| config_error("s3", e))?;
        let mut attributes = Attributes::new();
        if let (None, Some(class)) = (&o.endpoint, &o.storage_class) {
            attributes.insert(Attribute::StorageClass, class.clone().into());
        }
        let location = format!("s3://{}/{}", o.bucket, o.base_dir.trim_matches('/'));
        ObjectStoreRemote::new(location, Arc::new(store), &o.base_dir, tuning, attributes)
    }

    /// An Azure Blob container; [`AzureOptions::endpoint`] for Azurite or a private endpoint.
    /// Without a shared key, the credentials come from the `AZURE_*` variables (a service
    /// principal, workload identity) or the managed identity endpoint.
    ///
    /// # Errors
    /// Settings the client refuses.
    pub fn azure(o: &AzureOptions, tuning: &RemoteTuning) -> Result<ObjectStoreRemote> {
        use object_store::azure::MicrosoftAzureBuilder;
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_account(&o.account)
            .with_container_name(&o.container)
            .with_retry(retry(tuning));
        if let Some(key) = &o.shared_key {
            b = b.with_access_key(key);
        }
        if let Some(endpoint) = &o.endpoint {
            b = b.with_endpoint(endpoint.clone()).with_allow_http(endpoint.starts_with("http://"));
        }
        let store = b.build().map_err(|e| config_error("azure", e))?;
        let location = format!("azure://{}/{}/{}", o.account, o.container, o.base_dir.trim_matches('/'));
        ObjectStoreRemote::new(location, Arc::new(store), &o.base_dir, tuning, Attributes::new())
    }

    /// A Google Cloud Storage bucket. Without a credentials file, the `GOOGLE_*` variables,
    /// the application default credentials or the instance metadata server.
    ///
    /// # Errors
    /// Settings the client refuses.
    pub fn gcs(o: &GcsOptions, tuning: &RemoteTuning) -> Result<ObjectStoreRemote> {
        use object_store::gcp::GoogleCloudStorageBuilder;
        let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(&o.bucket).with_retry(retry(tuning));
        if let Some(file) = &o.credentials_file {
            b = b.with_service_account_path(file);
        }
        let store = b.build().map_err(|e| config_error("gcs", e))?;
        let location = format!("gs://{}/{}", o.bucket, o.base_dir.trim_matches('/'));
        ObjectStoreRemote::new(location, Arc::new(store), &o.base_dir, tuning, Attributes::new())
    }

    fn new(
        location: String,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        tuning: &RemoteTuning,
        attributes: Attributes,
    ) -> Result<ObjectStoreRemote> {
        Ok(ObjectStoreRemote {
            location,
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            handle: runtime()?,
            tuning: tuning.clone(),
            attributes,
        })
    }

    fn key(&self, rel: &str) -> ObjPath {
        // Names are kept as they are (`parse`), not percent-encoded (`from`), so a name listed
        // back opens the same object.
        let full = crate::store::join(&[&self.prefix, rel]);
        ObjPath::parse(&full).unwrap_or_else(|_| ObjPath::from(full.as_str()))
    }

    fn name(&self, rel: &str) -> String {
        format!("{}/{}", self.location.trim_end_matches('/'), rel.trim_matches('/'))
    }

    fn error(&self, op: &str, rel: &str, e: object_store::Error) -> StorageError {
        remote_error(op, &self.name(rel), e)
    }
}

/// Turns an object store error into a message an operator can act on.
fn remote_error(op: &str, name: &str, e: object_store::Error) -> StorageError {
    if let object_store::Error::NotFound { .. } = e {
        return StorageError::NotFound(format!("{name}: not found in the remote repository"));
    }
    let text = e.to_string();
    let hint = if text.contains("NoSuchBucket")
        || text.contains("ContainerNotFound")
        || text.contains("bucket does not exist")
    {
        "the bucket or container does not exist: "
    } else if matches!(e, object_store::Error::Unauthenticated { .. } | object_store::Error::PermissionDenied { .. })
        || ["403", "401", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "AuthenticationFailed"]
            .iter()
            .any(|w| text.contains(w))
    {
        "access denied, check the credentials: "
    } else {
        ""
    };
    StorageError::Remote { what: format!("{op} {name}"), reason: format!("{hint}{text}") }
}

fn io_error(e: object_store::Error) -> io::Error {
    io::Error::other(e.to_string())
}

struct ObjectWriter {
    remote: Arc<ObjectStoreRemote>,
    rel: String,
    key: ObjPath,
    buffer: Vec<u8>,
    upload: Option<WriteMultipart>,
    written: u64,
}

impl ObjectWriter {
    fn start_multipart(&mut self) -> io::Result<()> {
        let r = &self.remote;
        let opts = PutMultipartOptions { attributes: r.attributes.clone(), ..PutMultipartOptions::default() };
        let upload = r.handle.block_on(r.store.put_multipart_opts(&self.key, opts)).map_err(io_error)?;
        self.upload = Some(WriteMultipart::new_with_chunk_size(upload, r.tuning.part_size));
        Ok(())
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len() as u64;
        if self.upload.is_none() {
            self.buffer.extend_from_slice(buf);
            if self.buffer.len() < self.remote.tuning.part_size {
                return Ok(buf.len());
            }
            self.start_multipart()?;
        }
        let data = if self.buffer.is_empty() { buf.to_vec() } else { std::mem::take(&mut self.buffer) };
        let handle = self.remote.handle.clone();
        let concurrency = self.remote.tuning.part_concurrency.max(1);
        let Some(upload) = self.upload.as_mut() else { return Err(io::Error::other("no upload in progress")) };
        // Parts are uploaded by tasks of the runtime; at most `concurrency` at once, so the
        // memory a writer holds is bounded by (concurrency + 1) parts.
        {
            let _inside = handle.enter();
            upload.put(Bytes::from(data));
        }
        handle.block_on(upload.wait_for_capacity(concurrency)).map_err(io_error)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StoreWriter for ObjectWriter {
    fn commit(mut self: Box<Self>, _sync_dir: bool) -> Result<u64> {
        let r = self.remote.clone();
        match self.upload.take() {
            Some(upload) => {
                let _inside = r.handle.enter();
                r.handle.block_on(upload.finish()).map_err(|e| r.error("uploading", &self.rel, e))?;
            }
            None => {
                let payload = PutPayload::from(std::mem::take(&mut self.buffer));
                let opts = PutOptions { attributes: r.attributes.clone(), ..PutOptions::default() };
                r.handle
                    .block_on(r.store.put_opts(&self.key, payload, opts))
                    .map_err(|e| r.error("uploading", &self.rel, e))?;
            }
        }
        Ok(self.written)
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            let handle = self.remote.handle.clone();
            let _inside = handle.enter();
            if let Err(e) = handle.block_on(upload.abort()) {
                log::warn!("aborting the upload of {}: {e}", self.remote.name(&self.rel));
            }
        }
    }
}

struct ObjectReader {
    handle: Handle,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(io_error(e)),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// A shared handle, so writers can outlive the borrow that created them.
#[derive(Clone, Debug)]
pub struct SharedObjectRemote(pub Arc<ObjectStoreRemote>);

impl Store for SharedObjectRemote {
    fn create(&self, path: &str) -> Result<Box<dyn StoreWriter>> {
        Ok(Box::new(ObjectWriter {
            remote: self.0.clone(),
            rel: path.to_owned(),
            key: self.0.key(path),
            buffer: Vec::new(),
            upload: None,
            written: 0,
        }))
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        let r = &self.0;
        let got = r.handle.block_on(r.store.get(&r.key(path))).map_err(|e| r.error("reading", path, e))?;
        Ok(Box::new(ObjectReader { handle: r.handle.clone(), stream: got.into_stream(), current: Bytes::new() }))
    }

    fn list(&self, dir: &str) -> Result<Vec<StoreEntry>> {
        let r = &self.0;
        let prefix = r.key(dir);
        let listed =
            r.handle.block_on(r.store.list_with_delimiter(Some(&prefix))).map_err(|e| r.error("listing", dir, e))?;
        let last = |p: &ObjPath| p.filename().unwrap_or_default().to_owned();
        let mut out: Vec<StoreEntry> = listed
            .common_prefixes
            .iter()
            .map(|p| StoreEntry { name: last(p), kind: EntryKind::Dir, size: 0 })
            .chain(listed.objects.iter().map(|m| StoreEntry {
                name: last(&m.location),
                kind: EntryKind::File,
                size: m.size,
            }))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn create_dir(&self, _path: &str) -> Result<()> {
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<()> {
        // Only what exists is deleted: the object itself and every object under it. A bulk
        // delete (a POST) is not retried by the client, so the whole removal is, listing again.
        let r = &self.0;
        let started = std::time::Instant::now();
        let mut delay = std::time::Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            let key = r.key(path);
            let store = r.store.clone();
            let done = r.handle.block_on(async move {
                let mut names: Vec<ObjPath> = store.list(Some(&key)).map_ok(|m| m.location).try_collect().await?;
                match store.head(&key).await {
                    Ok(m) => names.push(m.location),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                if names.is_empty() {
                    return Ok(());
                }
                let stream = futures::stream::iter(names.into_iter().map(Ok)).boxed();
                store.delete_stream(stream).try_for_each(|_| async { Ok(()) }).await.or_else(|e| match e {
                    object_store::Error::NotFound { .. } => Ok(()),
                    e => Err(e),
                })
            });
            match done {
                Ok(()) => return Ok(()),
                Err(
                    e @ (object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }),
                ) => return Err(r.error("deleting", path, e)),
                Err(e) => {
                    if attempt >= r.tuning.max_retries || started.elapsed() + delay > r.tuning.retry_timeout {
                        return Err(r.error("deleting", path, e));
                    }
                    log::debug!("deleting {}: {e}; trying again", r.name(path));
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_secs(10));
                    attempt += 1;
                }
            }
        }
    }

    fn symlink(&self, target: &str, link: &str) -> Result<()> {
        // No links in an object store: the link becomes a copy, made by the server.
        let r = &self.0;
        r.handle.block_on(r.store.copy(&r.key(target), &r.key(link))).map_err(|e| r.error("copying", target, e))
    }

    fn read_link(&self, _path: &str) -> Result<Option<String>> {
        Ok(None)
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let r = &self.0;
        r.handle.block_on(r.store.rename(&r.key(from), &r.key(to))).map_err(|e| r.error("renaming", from, e))
    }

    fn sync_dir(&self, _dir: &str) -> Result<()> {
        // An object is durable once its upload completes.
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        let r = &self.0;
        let key = r.key(path);
        if r.handle.block_on(r.store.head(&key)).is_ok() {
            return true;
        }
        r.handle
            .block_on(r.store.list_with_delimiter(Some(&key)))
            .is_ok_and(|l| !l.objects.is_empty() || !l.common_prefixes.is_empty())
    }

    fn local_path(&self, _path: &str) -> Option<PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_host;

    #[test]
    fn virtual_host_endpoints_name_the_bucket() {
        assert_eq!(bucket_host("http://s3.example:3900", "b"), "http://b.s3.example:3900");
        assert_eq!(bucket_host("https://s3.example.com", "s3"), "https://s3.s3.example.com");
        assert_eq!(bucket_host("s3.example", "b"), "https://b.s3.example");
    }
}
