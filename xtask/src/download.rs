//! The control-plane binaries as their projects release them, on Linux:
//! kube-apiserver, kube-controller-manager and kubectl from Kubernetes'
//! download site, each checked against the `.sha256` published beside it;
//! etcd from its release tarball, checked against the release's `SHA256SUMS`.
//!
//! ```text
//! https://dl.k8s.io/release/v1.36.3/bin/linux/amd64/kube-apiserver(.sha256)
//! https://github.com/etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz
//! https://github.com/etcd-io/etcd/releases/download/v3.6.16/SHA256SUMS
//! ```
//!
//! `MATH_CONTROLLER_KUBERNETES_RELEASES` and `MATH_CONTROLLER_ETCD_RELEASES`
//! replace the two bases (the parts before the version) with a mirror laid
//! out the same way. Upstream publishes no server binaries for macOS: there
//! the binaries are built from source (see [`crate::assets`]).

use std::io::IsTerminal;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::say;

/// Where Kubernetes publishes its release binaries.
pub const KUBERNETES_RELEASES: &str = "https://dl.k8s.io/release";
/// Where etcd publishes its releases.
pub const ETCD_RELEASES: &str = "https://github.com/etcd-io/etcd/releases/download";
/// The variable that names a mirror of [`KUBERNETES_RELEASES`].
pub const KUBERNETES_RELEASES_ENV: &str = "MATH_CONTROLLER_KUBERNETES_RELEASES";
/// The variable that names a mirror of [`ETCD_RELEASES`].
pub const ETCD_RELEASES_ENV: &str = "MATH_CONTROLLER_ETCD_RELEASES";

/// How long a connection may take to open, and a download may stall.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The bases the downloads start from.
#[derive(Clone, Debug)]
pub struct Sources {
    pub kubernetes: String,
    pub etcd: String,
}

impl Sources {
    /// The official locations, or the mirrors the environment names.
    pub fn from_env() -> Sources {
        let base = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_string())
                .trim_end_matches('/')
                .to_string()
        };
        Sources {
            kubernetes: base(KUBERNETES_RELEASES_ENV, KUBERNETES_RELEASES),
            etcd: base(ETCD_RELEASES_ENV, ETCD_RELEASES),
        }
    }

    /// Both bases, as a person reads them.
    pub fn describe(&self) -> String {
        format!("{} and {}", self.kubernetes, self.etcd)
    }
}

/// The release's name for this machine's CPU, on Linux: the only system
/// for which every server part is published.
pub fn linux_arch() -> Option<&'static str> {
    if std::env::consts::OS != "linux" {
        return None;
    }
    match std::env::consts::ARCH {
        "x86_64" => Some("amd64"),
        "aarch64" => Some("arm64"),
        _ => None,
    }
}

/// Downloads the four binaries into `dir` (which exists and is empty), each
/// checked against its published checksum. An error says which file failed
/// and why; `dir` may then hold some of them, and the caller throws it away.
pub fn fetch(sources: &Sources, kubernetes: &str, etcd: &str, arch: &str, dir: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start an async runtime")?;
    runtime.block_on(async {
        let client = client()?;
        for binary in ["kube-apiserver", "kube-controller-manager", "kubectl"] {
            let url = format!("{}/{kubernetes}/bin/linux/{arch}/{binary}", sources.kubernetes);
            let sum = text(&client, &format!("{url}.sha256")).await?;
            let expected = sum.split_whitespace().next().unwrap_or_default().to_string();
            let bytes = get(&client, &url, Some(binary)).await?;
            verify(&bytes, &expected, &url)?;
            write_program(&dir.join(binary), &bytes)?;
        }
        let tarball = format!("etcd-{etcd}-linux-{arch}.tar.gz");
        let url = format!("{}/{etcd}/{tarball}", sources.etcd);
        let sums_url = format!("{}/{etcd}/SHA256SUMS", sources.etcd);
        let sums = text(&client, &sums_url).await?;
        let expected = checksum_for(&sums, &tarball)
            .ok_or_else(|| anyhow!("{sums_url} has no checksum for {tarball}"))?
            .to_string();
        let bytes = get(&client, &url, Some("etcd")).await?;
        verify(&bytes, &expected, &url)?;
        let archive = dir.join(&tarball);
        std::fs::write(&archive, &bytes).with_context(|| format!("cannot write {}", archive.display()))?;
        extract_etcd(&archive, &format!("etcd-{etcd}-linux-{arch}/etcd"), dir)?;
        std::fs::remove_file(&archive).with_context(|| format!("cannot remove {}", archive.display()))
    })
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A client for `https://` (the system's certificate store) and `http://`
/// (a mirror on this machine).
fn client() -> Result<HttpsClient> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .context("cannot read this system's certificate store")?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// A small text file (a checksum list).
async fn text(client: &HttpsClient, url: &str) -> Result<String> {
    let bytes = get(client, url, None).await?;
    String::from_utf8(bytes).map_err(|_| anyhow!("{url} is not text"))
}

/// The body of `url`, following redirects (the official sites send to a
/// CDN), with progress told when `name` is given.
async fn get(client: &HttpsClient, url: &str, name: Option<&str>) -> Result<Vec<u8>> {
    let mut url = url.to_string();
    for _ in 0..10 {
        let uri: hyper::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
        let response = tokio::time::timeout(CONNECT_TIMEOUT + STALL_TIMEOUT, client.get(uri.clone()))
            .await
            .map_err(|_| {
                anyhow!(
                    "{url} did not answer in {} s",
                    (CONNECT_TIMEOUT + STALL_TIMEOUT).as_secs()
                )
            })?
            .map_err(|err| anyhow!("cannot reach {url}: {}", chain(&err)))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| anyhow!("{url} answered {status} without a Location"))?;
            url = resolve(&uri, location);
            continue;
        }
        if !status.is_success() {
            bail!("{url} answered {status}");
        }
        let length = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        let mut progress = name.map(|name| Progress::new(name, length));
        let mut body = response.into_body();
        let mut bytes = Vec::with_capacity(length.unwrap_or(0).min(1 << 30) as usize);
        loop {
            let frame = tokio::time::timeout(STALL_TIMEOUT, body.frame())
                .await
                .map_err(|_| anyhow!("the download of {url} stalled for {} s", STALL_TIMEOUT.as_secs()))?;
            match frame {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data);
                        if let Some(progress) = progress.as_mut() {
                            progress.update(bytes.len() as u64);
                        }
                    }
                }
                Some(Err(err)) => bail!(
                    "the download of {url} was cut short after {} bytes{}: {}",
                    bytes.len(),
                    length.map(|length| format!(" of {length}")).unwrap_or_default(),
                    chain(&err)
                ),
            }
        }
        if let Some(length) = length
            && bytes.len() as u64 != length
        {
            bail!("the download of {url} was cut short: {} of {length} bytes", bytes.len());
        }
        if let Some(progress) = progress {
            progress.done(bytes.len() as u64);
        }
        return Ok(bytes);
    }
    bail!("{url} redirected more than 10 times")
}

/// An error with its causes, on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A redirect's `Location`, absolute.
fn resolve(from: &hyper::Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme = from.scheme_str().unwrap_or("https");
    let authority = from.authority().map(|authority| authority.as_str()).unwrap_or_default();
    format!("{scheme}://{authority}{location}")
}

/// One line per file: its size when it starts, its percentage on a
/// terminal, and a tick when it has arrived.
struct Progress {
    name: String,
    length: Option<u64>,
    shown: u64,
    terminal: bool,
}

impl Progress {
    fn new(name: &str, length: Option<u64>) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let size = length.map(megabytes).unwrap_or_default();
        eprint!(
            "{}",
            say!(
                "  downloading {name} {size}…",
                "  {name} をダウンロードしています {size}…"
            )
        );
        if !terminal {
            eprintln!();
        }
        Progress {
            name: name.to_string(),
            length,
            shown: 0,
            terminal,
        }
    }

    fn update(&mut self, received: u64) {
        let Some(length) = self.length.filter(|length| *length > 0) else {
            return;
        };
        let percent = received * 100 / length;
        if self.terminal && percent >= self.shown + 5 {
            self.shown = percent;
            eprint!("\r  {} {} {percent:>3} %", self.name, megabytes(length));
        }
    }

    fn done(self, received: u64) {
        let line = say!(
            "  {} {}: checksum ✓",
            "  {} {}: チェックサム ✓",
            self.name,
            megabytes(received)
        );
        if self.terminal {
            eprintln!("\r{line}          ");
        } else {
            eprintln!("{line}");
        }
    }
}

fn megabytes(bytes: u64) -> String {
    format!("({:.1} MB)", bytes as f64 / 1e6)
}

/// Fails unless `bytes` have the SHA-256 `expected` (hexadecimal) that the
/// release publishes for `url`.
pub fn verify(bytes: &[u8], expected: &str, url: &str) -> Result<()> {
    let actual = sha256_hex(bytes);
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        bail!("{url} does not match its published checksum (SHA-256 {actual}, published {expected})");
    }
    Ok(())
}

/// The SHA-256 of `bytes`, in lowercase hexadecimal.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The checksum a `SHA256SUMS` file gives for `name` (lines `HEX  NAME`).
pub fn checksum_for<'a>(sums: &'a str, name: &str) -> Option<&'a str> {
    sums.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let sum = parts.next()?;
        let file = parts.next()?.trim_start_matches('*');
        (file == name).then_some(sum)
    })
}

/// Writes an executable file.
fn write_program(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    Ok(())
}

/// Takes `member` (`etcd-v3.6.16-linux-amd64/etcd`) out of the tarball into
/// `dir` as `etcd`, with the system's `tar`.
fn extract_etcd(archive: &Path, member: &str, dir: &Path) -> Result<()> {
    let output = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .args(["--strip-components=1", member])
        .output()
        .context("cannot run tar to unpack etcd's release")?;
    if !output.status.success() || !dir.join("etcd").is_file() {
        bail!(
            "tar could not take {member} out of {}: {}",
            archive.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let etcd = dir.join("etcd");
    let bytes = std::fs::read(&etcd).with_context(|| format!("cannot read {}", etcd.display()))?;
    write_program(&etcd, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sums_file_gives_the_checksum_of_the_named_file_only() {
        let sums = "aaaa  etcd-v3.6.16-darwin-arm64.zip\nbbbb  etcd-v3.6.16-linux-amd64.tar.gz\ncccc *etcd-v3.6.16-linux-arm64.tar.gz\n";
        assert_eq!(checksum_for(sums, "etcd-v3.6.16-linux-amd64.tar.gz"), Some("bbbb"));
        assert_eq!(checksum_for(sums, "etcd-v3.6.16-linux-arm64.tar.gz"), Some("cccc"));
        assert_eq!(checksum_for(sums, "etcd-v3.6.16-linux-amd64"), None);
    }

    #[test]
    fn the_checksum_is_sha256_in_hexadecimal() {
        // The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        assert!(verify(b"abc", &abc.to_uppercase(), "u").is_ok());
        let err = verify(b"abd", abc, "https://example/x").unwrap_err().to_string();
        assert!(
            err.contains("https://example/x does not match its published checksum"),
            "{err}"
        );
    }

    #[test]
    fn a_relative_redirect_keeps_the_scheme_and_host() {
        let from: hyper::Uri = "https://dl.k8s.io/release/v1/bin".parse().unwrap();
        assert_eq!(resolve(&from, "/a/b"), "https://dl.k8s.io/a/b");
        assert_eq!(resolve(&from, "https://cdn.example/x"), "https://cdn.example/x");
    }
}
