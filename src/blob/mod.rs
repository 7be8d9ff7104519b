//! Stored file bytes behind one trait, with two real backends: a local directory (the embedded
//! default, `local.rs`) and S3-compatible object storage (cluster mode, `s3.rs`), shared by every
//! node so that any node serves any file. `sweep.rs` removes bytes no file record owns.
//!
//! Bytes are streamed both ways (never whole in memory): an upload is hashed on the way and
//! becomes visible only when complete, so a failed upload leaves nothing that can be read.

pub mod local;
pub mod s3;
pub mod sweep;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the content is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the upload ended early")]
    Incomplete,
    #[error("blob io: {0}")]
    Io(#[from] io::Error),
}

/// What was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

/// A stored blob as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    pub id: String,
    pub size: u64,
    /// When it was written (ms since the epoch).
    pub modified_ms: i64,
}

/// A byte stream, as uploads arrive and downloads leave.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Store a new blob `id` from `body`, which must be exactly `expected` bytes.
    async fn put(&self, id: &str, body: ByteStream, expected: u64) -> Result<Stored, BlobError>;
    /// Stream blob `id`.
    async fn get(&self, id: &str) -> Result<ByteStream, BlobError>;
    /// Remove blob `id` (no error if it is already gone).
    async fn delete(&self, id: &str) -> Result<(), BlobError>;
    /// Every stored blob (for the orphan sweep).
    async fn list(&self) -> Result<Vec<BlobMeta>, BlobError>;
    /// Where the bytes live, for logs: `local:DIR` or `s3://BUCKET/PREFIX`.
    fn describe(&self) -> String;
}

/// Ids are server-made tokens (`f_` and base32); refuse anything that could name another path
/// or object.
pub(crate) fn check_id(id: &str) -> io::Result<()> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad blob id"));
    }
    Ok(())
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
