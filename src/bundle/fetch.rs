//! Files over HTTPS, kept only with the SHA-256 they must have.

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::BundleError;

/// Downloads for a bundle, optionally from a mirror of the upstream hosts.
pub struct Downloader {
    client: reqwest::Client,
    mirror: Option<String>,
}

impl Downloader {
    /// `mirror`: a base URL that serves every upstream file under
    /// `/<host>/<path>` (`https://dl.k8s.io/release/…` is fetched as
    /// `<mirror>/dl.k8s.io/release/…`), as a local file server or a
    /// caching proxy lays them out.
    pub fn new(mirror: Option<&str>) -> Result<Downloader, BundleError> {
        super::tls_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("kubelab/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|e| BundleError::Http {
                url: String::new(),
                message: e.to_string(),
            })?;
        Ok(Downloader {
            client,
            mirror: mirror.map(|m| m.trim_end_matches('/').to_string()),
        })
    }

    /// Where `url` is really fetched from.
    pub fn location(&self, url: &str) -> String {
        match &self.mirror {
            Some(m) => {
                let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
                format!("{m}/{rest}")
            }
            None => url.to_string(),
        }
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, BundleError> {
        let at = self.location(url);
        let fail = |message: String| BundleError::Http {
            url: at.clone(),
            message,
        };
        let response = self
            .client
            .get(&at)
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        Ok(response)
    }

    /// A small text file (a published checksum list).
    pub async fn text(&self, url: &str) -> Result<String, BundleError> {
        let response = self.get(url).await?;
        let at = self.location(url);
        let bytes = response.bytes().await.map_err(|e| BundleError::Http {
            url: at,
            message: error_chain(&e),
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Download `url` to `dest` through a temporary file beside it, which
    /// becomes `dest` only when its SHA-256 is `sha256`. Returns the size.
    pub async fn file(&self, url: &str, dest: &Path, sha256: &str) -> Result<u64, BundleError> {
        let mut response = self.get(url).await?;
        let at = self.location(url);
        let tmp = dest.with_extension("partial");
        let io = |e| BundleError::io(&tmp, e);
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
            let mut hash = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = response.chunk().await.map_err(|e| BundleError::Http {
                url: at.clone(),
                message: error_chain(&e),
            })? {
                hash.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(io)?;
            }
            file.flush().await.map_err(io)?;
            let got = data_encoding::HEXLOWER.encode(&hash.finalize());
            if got != sha256 {
                return Err(BundleError::Checksum {
                    url: at.clone(),
                    expected: sha256.to_string(),
                    got,
                });
            }
            tokio::fs::rename(&tmp, dest).await.map_err(io)?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

/// reqwest's error with its causes ("error sending request: … connection
/// refused"), which its Display leaves out.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The SHA-256 of a file already on disk, in lower-case hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash)?;
    Ok(data_encoding::HEXLOWER.encode(&hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_serves_upstream_paths_under_their_host() {
        let d = Downloader::new(Some("http://127.0.0.1:8080/files/")).unwrap();
        assert_eq!(
            d.location("https://dl.k8s.io/release/v1.28.15/bin/linux/amd64/kubeadm"),
            "http://127.0.0.1:8080/files/dl.k8s.io/release/v1.28.15/bin/linux/amd64/kubeadm"
        );
        let direct = Downloader::new(None).unwrap();
        assert_eq!(
            direct.location("https://x.example/a"),
            "https://x.example/a"
        );
    }
}
