//! Blobs as objects in an S3-compatible bucket (AWS S3, SeaweedFS, Garage, MinIO, R2…), under a
//! key prefix. Small uploads are one `PUT`; larger ones a multipart upload of `part_size` parts,
//! at most two in flight, so a 1 GiB upload streams with flat memory. An object becomes visible
//! only when its upload completes; a failed multipart upload is aborted.

use super::{check_id, hex, BlobError, BlobMeta, BlobStore, ByteStream, Stored};
use crate::config::S3Config;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::io;

/// Parts in flight per upload: bounds an upload's memory to about three parts.
const PARTS_IN_FLIGHT: usize = 2;

pub struct S3Blobs {
    store: AmazonS3,
    bucket: String,
    prefix: String,
    part_size: usize,
}

fn io_err(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

impl S3Blobs {
    /// A client for `config`; credentials not in the configuration come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, instance metadata).
    pub fn new(config: &S3Config) -> Result<S3Blobs, BlobError> {
        // reqwest is built without a TLS provider of its own: rustls on ring serves https
        // endpoints. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region);
        if let Some(endpoint) = &config.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &config.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        let store = b.build().map_err(io_err)?;
        Ok(S3Blobs {
            store,
            bucket: config.bucket.clone(),
            prefix: config.prefix.trim_matches('/').to_owned(),
            part_size: config.part_size_bytes,
        })
    }

    fn key(&self, id: &str) -> io::Result<Path> {
        check_id(id)?;
        Ok(if self.prefix.is_empty() {
            Path::from(id)
        } else {
            Path::from(format!("{}/{id}", self.prefix))
        })
    }

    /// Stream the rest of `body` into a multipart upload that starts with `first`.
    async fn put_parts(
        &self,
        key: &Path,
        first: Bytes,
        body: &mut ByteStream,
        expected: u64,
        hash: &mut Sha256,
    ) -> Result<u64, BlobError> {
        let upload = self.store.put_multipart(key).await.map_err(io_err)?;
        let mut write = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut size = first.len() as u64;
        write.put(first);
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if size > expected {
                    return Err(BlobError::TooLarge(expected));
                }
                hash.update(&chunk);
                write
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(io_err)?;
                write.put(chunk);
            }
            if size != expected {
                return Err(BlobError::Incomplete);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                write.finish().await.map_err(io_err)?;
                Ok(size)
            }
            Err(e) => {
                if let Err(abort) = write.abort().await {
                    tracing::warn!(key = %key, error = %abort, "cannot abort a multipart upload");
                }
                Err(e)
            }
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(
        &self,
        id: &str,
        mut body: ByteStream,
        expected: u64,
    ) -> Result<Stored, BlobError> {
        let key = self.key(id)?;
        let mut hash = Sha256::new();
        let mut head = BytesMut::new();
        // Up to one part in memory: a body that ends there is one PUT.
        while head.len() < self.part_size {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    if (head.len() + chunk.len()) as u64 > expected {
                        return Err(BlobError::TooLarge(expected));
                    }
                    hash.update(&chunk);
                    head.extend_from_slice(&chunk);
                }
                None => {
                    if head.len() as u64 != expected {
                        return Err(BlobError::Incomplete);
                    }
                    let size = head.len() as u64;
                    let payload = PutPayload::from_bytes(head.freeze());
                    self.store.put(&key, payload).await.map_err(io_err)?;
                    return Ok(Stored {
                        size,
                        sha256: hex(&hash.finalize()),
                    });
                }
            }
        }
        let size = self
            .put_parts(&key, head.freeze(), &mut body, expected, &mut hash)
            .await?;
        Ok(Stored {
            size,
            sha256: hex(&hash.finalize()),
        })
    }

    async fn get(&self, id: &str) -> Result<ByteStream, BlobError> {
        let got = self.store.get(&self.key(id)?).await.map_err(io_err)?;
        Ok(got.into_stream().map_err(io_err).boxed())
    }

    async fn delete(&self, id: &str) -> Result<(), BlobError> {
        match self.store.delete(&self.key(id)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_err(e).into()),
        }
    }

    async fn list(&self) -> Result<Vec<BlobMeta>, BlobError> {
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        let metas: Vec<_> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(io_err)?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let id = m.location.filename()?.to_owned();
                check_id(&id).ok()?;
                Some(BlobMeta {
                    id,
                    size: m.size,
                    modified_ms: m.last_modified.timestamp_millis(),
                })
            })
            .collect())
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}
