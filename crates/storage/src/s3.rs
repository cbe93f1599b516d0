//! The cluster's S3, seen as a client (aws-sdk-s3): buckets, the probe
//! object that is the storage health check, usage. Works against Garage and
//! MinIO alike: custom endpoint, path-style addressing, the server's region.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::{S3Key, StorageError};

/// The deadlines of every S3 call: a server that stops mid-request (its node
/// powered off, its engine stopped for a backup) gives an error within
/// seconds instead of a hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Reaching the server (through a forward: the tunnel's local end).
    pub connect: Duration,
    /// From a request sent to the first byte of its answer.
    pub first_byte: Duration,
    /// One attempt of a call, its request body sent and its answer read
    /// (bodies read as a stream, such as a download, are bounded by
    /// [`Deadlines::idle`] instead).
    pub attempt: Duration,
    /// A download's body with no byte arriving.
    pub idle: Duration,
    /// Attempts of one call (transient failures are retried with backoff).
    pub attempts: u32,
}

impl Default for Deadlines {
    /// Seconds for the small objects clusterkit reads and writes (a probe,
    /// a manifest); minutes for an archive of a few hundred MB.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(20),
            attempt: Duration::from_secs(300),
            idle: Duration::from_secs(20),
            attempts: 3,
        }
    }
}

/// An S3 client for the cluster's storage.
#[derive(Debug, Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    endpoint: String,
    deadlines: Deadlines,
}

fn s3_err(what: &str, e: impl std::fmt::Debug + std::fmt::Display) -> StorageError {
    // The SDK's Display is terse ("service error"); the source chain says why.
    let detail = format!("{e:?}");
    let short = detail.chars().take(400).collect::<String>();
    StorageError::S3 {
        what: what.to_string(),
        reason: format!("{e}: {short}"),
    }
}

impl S3 {
    /// A client of `endpoint` (e.g. `http://127.0.0.1:39000`, a
    /// [`clusterkit_core::transport::forward::Forward`] to a node's S3),
    /// with the default [`Deadlines`].
    pub fn new(endpoint: &str, region: &str, key: &S3Key) -> Self {
        Self::with_deadlines(endpoint, region, key, Deadlines::default())
    }

    /// [`S3::new`] with other deadlines.
    pub fn with_deadlines(endpoint: &str, region: &str, key: &S3Key, deadlines: Deadlines) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(deadlines.connect)
            .read_timeout(deadlines.first_byte)
            .operation_attempt_timeout(deadlines.attempt)
            .build();
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http)
            .endpoint_url(endpoint)
            .region(Region::new(region.to_string()))
            .force_path_style(true)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(deadlines.attempts.max(1)))
            .credentials_provider(Credentials::new(
                key.id.clone(),
                key.secret.clone(),
                None,
                None,
                "clusterkit",
            ))
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(conf),
            endpoint: endpoint.to_string(),
            deadlines,
        }
    }

    /// Whether the server answers for `bucket`: one `HEAD` of the bucket,
    /// one attempt, within `within`. What a client asks before it picks a
    /// node. The bucket missing (404) is an answer: the call that follows
    /// says so, or makes it.
    ///
    /// Garage serves a `HEAD` of a bucket from the node's own copy of the
    /// key and bucket tables, with no request to a peer, so a node whose
    /// peer froze answers at once. (A listing of the buckets reads two
    /// tables per bucket with a read quorum, each read waiting up to
    /// [`crate::GARAGE_RPC_TIMEOUT_MS`] on a frozen peer: the probe would
    /// cost more than the work it guards.)
    pub async fn answers(&self, bucket: &str, within: Duration) -> Result<(), StorageError> {
        let ask = self
            .client
            .head_bucket()
            .bucket(bucket)
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::new()
                    .retry_config(RetryConfig::standard().with_max_attempts(1))
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(within)
                            .read_timeout(within)
                            .operation_timeout(within)
                            .build(),
                    ),
            );
        let what = || format!("asking {} for bucket {bucket}", self.endpoint);
        match tokio::time::timeout(within, ask.send()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(()),
            Ok(Err(e)) => Err(s3_err(&what(), e)),
            Err(_) => Err(StorageError::S3 {
                what: what(),
                reason: format!("no answer within {} s", within.as_secs()),
            }),
        }
    }

    /// The endpoint, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates `bucket` unless it exists.
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<bool, StorageError> {
        if self
            .client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(false);
        }
        self.client
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| s3_err(&format!("creating bucket {bucket}"), e))?;
        Ok(true)
    }

    /// Writes `body` at `key`.
    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_err(&format!("writing s3://{bucket}/{key}"), e))?;
        Ok(())
    }

    /// Reads `key`.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_err(&format!("reading s3://{bucket}/{key}"), e))?;
        // The body is a stream: each chunk must come within the idle bound.
        let mut body = out.body;
        let mut bytes = Vec::new();
        loop {
            match tokio::time::timeout(self.deadlines.idle, body.next()).await {
                Ok(Some(chunk)) => bytes.extend_from_slice(
                    &chunk.map_err(|e| s3_err(&format!("reading s3://{bucket}/{key}"), e))?,
                ),
                Ok(None) => break,
                Err(_) => {
                    return Err(StorageError::S3 {
                        what: format!("reading s3://{bucket}/{key} from {}", self.endpoint),
                        reason: format!(
                            "the body stopped after {} bytes: nothing for {} s",
                            bytes.len(),
                            self.deadlines.idle.as_secs()
                        ),
                    })
                }
            }
        }
        Ok(bytes)
    }

    /// Deletes `key`.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_err(&format!("deleting s3://{bucket}/{key}"), e))?;
        Ok(())
    }

    /// Keys and their sizes under `prefix`; none when the bucket does not exist.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<(String, i64)>, StorageError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_bucket()) => {
                    return Ok(Vec::new())
                }
                Err(e) => return Err(s3_err(&format!("listing s3://{bucket}/{prefix}"), e)),
            };
            for o in page.contents() {
                out.push((
                    o.key().unwrap_or_default().to_string(),
                    o.size().unwrap_or(0),
                ));
            }
        }
        Ok(out)
    }

    /// The health check: writes a probe object, reads it back, compares,
    /// deletes it. Returns the round trip's duration.
    pub async fn probe(
        &self,
        bucket: &str,
        name: &str,
    ) -> Result<std::time::Duration, StorageError> {
        let start = std::time::Instant::now();
        let key = format!("probe/{name}");
        let body =
            format!("clusterkit probe {name} {:?}", std::time::SystemTime::now()).into_bytes();
        self.put(bucket, &key, body.clone()).await?;
        let back = self.get(bucket, &key).await?;
        if back != body {
            return Err(StorageError::S3 {
                what: format!("probe s3://{bucket}/{key}"),
                reason: format!(
                    "read back {} bytes that differ from the {} written",
                    back.len(),
                    body.len()
                ),
            });
        }
        self.delete(bucket, &key).await?;
        Ok(start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server on a local port answering every request with `status`
    /// (`None`: reading requests and never answering, a frozen server).
    /// Returns the endpoint and the first request line it read.
    async fn server(
        status: Option<&'static str>,
    ) -> (String, tokio::sync::oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(head.lines().next().unwrap_or_default().to_string());
                }
                match status {
                    Some(s) => {
                        let _ = conn
                            .write_all(
                                format!("HTTP/1.1 {s}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                    .as_bytes(),
                            )
                            .await;
                    }
                    None => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                }
            }
        });
        (endpoint, rx)
    }

    fn key() -> S3Key {
        S3Key {
            id: "GK0123456789abcdef01234567".into(),
            secret: "0".repeat(64),
        }
    }

    #[tokio::test]
    async fn the_probe_is_a_head_of_the_bucket_and_a_missing_bucket_is_an_answer() {
        for status in ["200 OK", "404 Not Found"] {
            let (endpoint, first) = server(Some(status)).await;
            let s3 = S3::new(&endpoint, "garage", &key());
            s3.answers("clusterkit", Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("{status}: {e}"));
            let line = first.await.unwrap();
            assert!(line.starts_with("HEAD /clusterkit"), "{line}");
        }
    }

    #[tokio::test]
    async fn a_refusing_or_silent_server_is_not_an_answer() {
        let (endpoint, _) = server(Some("403 Forbidden")).await;
        let s3 = S3::new(&endpoint, "garage", &key());
        let e = s3
            .answers("clusterkit", Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("for bucket clusterkit"), "{e}");

        let (endpoint, _) = server(None).await;
        let s3 = S3::new(&endpoint, "garage", &key());
        let start = Instant::now();
        let e = s3
            .answers("clusterkit", Duration::from_secs(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert!(e.contains(&endpoint), "{e}");
    }
}
