//! Blobs as files under a directory: the embedded default. An upload is written chunk by chunk
//! to `tmp/ID.part`, synced, and renamed into place only when complete.

use super::{check_id, hex, BlobError, BlobMeta, BlobStore, ByteStream, Stored};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::io;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Blobs as files under a directory.
pub struct LocalBlobs {
    dir: PathBuf,
}

/// Read size for downloads.
const CHUNK: usize = 64 * 1024;

impl LocalBlobs {
    pub fn new(dir: PathBuf) -> LocalBlobs {
        LocalBlobs { dir }
    }

    /// [`LocalBlobs::new`] for the directory this process alone writes: what a crash left in
    /// `tmp/` (uploads cut off mid-body) is removed; returns how many.
    pub fn open(dir: PathBuf) -> io::Result<(LocalBlobs, usize)> {
        let mut removed = 0;
        match std::fs::read_dir(dir.join("tmp")) {
            Ok(entries) => {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().ends_with(".part") {
                        std::fs::remove_file(e.path())?;
                        removed += 1;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok((LocalBlobs { dir }, removed))
    }

    fn path(&self, id: &str) -> io::Result<PathBuf> {
        check_id(id)?;
        Ok(self.dir.join(id))
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(
        &self,
        id: &str,
        mut body: ByteStream,
        expected: u64,
    ) -> Result<Stored, BlobError> {
        let path = self.path(id)?;
        let tmp_dir = self.dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let tmp = tmp_dir.join(format!("{id}.part"));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut hash = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if size > expected {
                    return Err(BlobError::TooLarge(expected));
                }
                hash.update(&chunk);
                file.write_all(&chunk).await?;
            }
            if size != expected {
                return Err(BlobError::Incomplete);
            }
            file.sync_all().await?;
            let sha256 = hex(&hash.finalize());
            Ok(Stored { size, sha256 })
        }
        .await;
        match result {
            Ok(stored) => {
                tokio::fs::rename(&tmp, &path).await?;
                Ok(stored)
            }
            Err(e) => {
                // Nothing stays behind from a failed upload; the file may not exist yet.
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn get(&self, id: &str) -> Result<ByteStream, BlobError> {
        let file = tokio::fs::File::open(self.path(id)?).await?;
        let stream = futures_util::stream::try_unfold(file, |mut file| async move {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), file)))
        });
        Ok(stream.boxed())
    }

    async fn delete(&self, id: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(id)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self) -> Result<Vec<BlobMeta>, BlobError> {
        let mut out = Vec::new();
        let mut dir = match tokio::fs::read_dir(&self.dir).await {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = dir.next_entry().await? {
            let meta = entry.metadata().await?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !meta.is_file() || check_id(&id).is_err() {
                continue;
            }
            let modified_ms = meta
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            out.push(BlobMeta {
                id,
                size: meta.len(),
                modified_ms,
            });
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("local:{}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
        futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed()
    }

    #[tokio::test]
    async fn put_get_delete() {
        let dir = tempfile::tempdir().expect("tmp");
        let blobs = LocalBlobs::new(dir.path().to_owned());
        let s = blobs
            .put("f_1", body(vec![b"hello ", b"world"]), 11)
            .await
            .expect("put");
        assert_eq!(s.size, 11);
        assert_eq!(
            s.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let mut got = Vec::new();
        let mut st = blobs.get("f_1").await.expect("get");
        while let Some(c) = st.next().await {
            got.extend_from_slice(&c.expect("chunk"));
        }
        assert_eq!(got, b"hello world");
        let listed = blobs.list().await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].id.as_str(), listed[0].size), ("f_1", 11));
        blobs.delete("f_1").await.expect("delete");
        blobs.delete("f_1").await.expect("idempotent");
        assert!(blobs.get("f_1").await.is_err());
    }

    #[tokio::test]
    async fn wrong_sizes_leave_nothing_behind() {
        let dir = tempfile::tempdir().expect("tmp");
        let blobs = LocalBlobs::new(dir.path().to_owned());
        assert!(matches!(
            blobs.put("f_2", body(vec![b"toolong"]), 3).await,
            Err(BlobError::TooLarge(3))
        ));
        assert!(matches!(
            blobs.put("f_3", body(vec![b"ab"]), 3).await,
            Err(BlobError::Incomplete)
        ));
        assert!(blobs.get("f_2").await.is_err());
        assert!(blobs.get("f_3").await.is_err());
        let left = std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp dir")
            .count();
        assert_eq!(left, 0);
        assert!(blobs.put("../x", body(vec![]), 0).await.is_err());
    }
}
