//! Downloads of `source_url` (and of studio tracks): streamed to a file in the task workspace,
//! capped at `MAX_VIDEO_SIZE_GB`, extension-checked, optionally restricted to an allow-list of
//! hosts, with connect and read timeouts. Only `http` and `https`: a task never reads a local
//! file by URL. Every redirect hop and every address connected to obeys the same rules
//! ([`crate::egress`]: no loopback, link-local or private address unless
//! `SOURCE_ALLOW_PRIVATE_NETWORKS=1`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::egress::{self, GuardedResolver, Refused, SourcePolicy};
use crate::error::TaskError;
use crate::process::ProcessRunner;

/// Extensions accepted for media sources.
pub const MEDIA_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mkv", "webm", "mov", "avi", "flv", "wmv", "mpg", "mpeg", "ts", "mts", "m2ts",
    "3gp", "ogv", "ogg", "oga", "opus", "mp3", "wav", "m4a", "aac", "flac", "wma",
];

/// What a download is for (decides which extensions are accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A video or audio file.
    Media,
    /// An Opencast mediapackage or SMIL catalog (`.xml`, `.smil`).
    Mediapackage,
    /// A still image (watermark): png, jpg, jpeg, gif, webp.
    Image,
}

/// Extensions accepted for images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "webp"];

/// The limits every download obeys.
#[derive(Debug, Clone)]
pub struct SourceLimits {
    /// Largest accepted file (`MAX_VIDEO_SIZE_GB`).
    pub max_bytes: u64,
    /// Hosts a source may come from (`SOURCE_ALLOWED_HOSTS`); empty allows every host.
    pub allowed_hosts: Vec<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence while reading.
    pub read_timeout: Duration,
}

/// A downloaded file.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Where it is (inside the workspace).
    pub path: PathBuf,
    /// The URL's last path segment, percent-decoded.
    pub name: String,
    /// Bytes written.
    pub bytes: u64,
}

/// Downloads with [`SourceLimits`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SourceFetcher {
    client: reqwest::Client,
    limits: Arc<SourceLimits>,
    policy: SourcePolicy,
}

impl SourceFetcher {
    /// A fetcher with these limits that refuses loopback, link-local and private addresses.
    pub fn new(limits: SourceLimits) -> Result<Self, reqwest::Error> {
        Self::with_private_networks(limits, false)
    }

    /// A fetcher with these limits; `allow_private` (`SOURCE_ALLOW_PRIVATE_NETWORKS`) lets it
    /// fetch from loopback, link-local and private addresses.
    pub fn with_private_networks(
        limits: SourceLimits,
        allow_private: bool,
    ) -> Result<Self, reqwest::Error> {
        let policy = SourcePolicy {
            allowed_hosts: Arc::new(limits.allowed_hosts.clone()),
            allow_private,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .read_timeout(limits.read_timeout)
            .redirect(policy.redirect_policy())
            .dns_resolver(GuardedResolver::new(policy.clone()))
            .build()?;
        Ok(SourceFetcher {
            client,
            limits: Arc::new(limits),
            policy,
        })
    }

    /// Checks `url` against the scheme, host and extension rules, and returns its decoded file
    /// name; the same checks run before any byte is fetched.
    pub fn check_url(
        &self,
        url: &str,
        kind: SourceKind,
    ) -> Result<(reqwest::Url, String), TaskError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            TaskError::BadInput(format!("source_url {url:?} is not a valid URL: {e}"))
        })?;
        self.policy
            .check(&parsed)
            .map_err(|refused| refusal(&refused))?;
        let segment = parsed
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .unwrap_or_default();
        let name = percent_encoding::percent_decode_str(segment)
            .decode_utf8_lossy()
            .replace(['/', '\\', '\0'], "_");
        let extension = Path::new(&name)
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let accepted = match kind {
            SourceKind::Media => MEDIA_EXTENSIONS.contains(&extension.as_str()),
            SourceKind::Mediapackage => matches!(extension.as_str(), "xml" | "smil"),
            SourceKind::Image => IMAGE_EXTENSIONS.contains(&extension.as_str()),
        };
        if !accepted {
            let expected = match kind {
                SourceKind::Media => MEDIA_EXTENSIONS.join(" "),
                SourceKind::Mediapackage => "xml smil".to_owned(),
                SourceKind::Image => IMAGE_EXTENSIONS.join(" "),
            };
            return Err(TaskError::BadInput(format!(
                "source_url file {name:?} has extension {extension:?}; expected one of: {expected}"
            )));
        }
        Ok((parsed, name))
    }

    /// Downloads `url` into `dir` as `file_name` (already a safe name), obeying the limits and
    /// the task's stop and timeout. A partial file is removed on failure.
    pub async fn fetch(
        &self,
        url: &str,
        kind: SourceKind,
        dir: &Path,
        file_name: &str,
        process: &ProcessRunner,
    ) -> Result<Fetched, TaskError> {
        let (parsed, name) = self.check_url(url, kind)?;
        let path = dir.join(file_name);
        let result = tokio::select! {
            result = self.download(parsed, &path) => result,
            () = process.cancel_token().cancelled() => Err(process.stopped()),
            () = tokio::time::sleep(process.remaining()) => Err(process.check().err().unwrap_or(TaskError::Failed("download timed out".to_owned()))),
        };
        match result {
            Ok(bytes) => Ok(Fetched { path, name, bytes }),
            Err(error) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(error)
            }
        }
    }

    async fn download(&self, url: reqwest::Url, path: &Path) -> Result<u64, TaskError> {
        let shown = url.to_string();
        let response =
            self.client
                .get(url)
                .send()
                .await
                .map_err(|e| match egress::find_refusal(&e) {
                    Some(refused) => refusal(refused),
                    None => TaskError::Failed(format!(
                        "downloading {shown}: {}",
                        egress::error_chain(&e)
                    )),
                })?;
        let status = response.status();
        if !status.is_success() {
            return Err(TaskError::Failed(format!(
                "downloading {shown}: HTTP {status}"
            )));
        }
        let max = self.limits.max_bytes;
        if let Some(length) = response.content_length() {
            if length > max {
                return Err(TaskError::BadInput(format!(
                    "source {shown} is {length} bytes, more than MAX_VIDEO_SIZE_GB allows ({max} bytes)"
                )));
            }
        }
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| TaskError::io("creating", path, &e))?;
        let mut written: u64 = 0;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| TaskError::Failed(format!("downloading {shown}: {e}")))?;
            written += chunk.len() as u64;
            if written > max {
                return Err(TaskError::BadInput(format!(
                    "source {shown} is larger than MAX_VIDEO_SIZE_GB allows ({max} bytes)"
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| TaskError::io("writing", path, &e))?;
        }
        file.flush()
            .await
            .map_err(|e| TaskError::io("writing", path, &e))?;
        if written == 0 {
            return Err(TaskError::BadInput(format!("source {shown} is empty")));
        }
        Ok(written)
    }
}

/// A refused source URL or redirect hop: bad input, with its reason label, logged.
fn refusal(refused: &Refused) -> TaskError {
    tracing::warn!(url = %refused.url, reason = refused.reason, "source refused");
    TaskError::BadInput(format!("source refused: {refused}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(hosts: &[&str]) -> SourceFetcher {
        SourceFetcher::new(SourceLimits {
            max_bytes: 1024,
            allowed_hosts: hosts.iter().map(ToString::to_string).collect(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
        })
        .expect("client")
    }

    #[test]
    fn url_rules() {
        let any = fetcher(&[]);
        let (_, name) = any
            .check_url("http://h/a/Ma%20vid%C3%A9o.MP4?x=1", SourceKind::Media)
            .expect("media url");
        assert_eq!(name, "Ma vidéo.MP4");
        for bad in [
            "file:///etc/passwd.mp4",
            "ftp://h/a.mp4",
            "http://h/a.exe",
            "http://h/",
            "not a url",
            "http://h/a%2F..%2F..%2Fx.sh",
        ] {
            assert!(any.check_url(bad, SourceKind::Media).is_err(), "{bad}");
        }
        assert!(any
            .check_url("http://h/mp.xml", SourceKind::Mediapackage)
            .is_ok());
        assert!(any
            .check_url("http://h/mp.mp4", SourceKind::Mediapackage)
            .is_err());
        let only = fetcher(&["media.example.org"]);
        assert!(only
            .check_url("http://MEDIA.example.org/a.mp4", SourceKind::Media)
            .is_ok());
        let error = only
            .check_url("http://evil.example/a.mp4", SourceKind::Media)
            .expect_err("must fail");
        assert!(
            error.to_string().contains("SOURCE_ALLOWED_HOSTS"),
            "{error}"
        );
    }
}
