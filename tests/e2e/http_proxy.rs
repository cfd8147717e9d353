//! An HTTPS proxy in front of the API server that can send one kind's
//! watches away while everything else passes: what a controller sees when
//! one of its watches loses its place in history (410 Gone) and lists
//! again, the others going on.
//!
//! It serves TLS with the plane's own API-server certificate (so the
//! program's kubeconfig trusts it as it is, with another port), reads each
//! HTTP/1.1 request, and sends it on with the scenario's client. Only the
//! requests a scenario needs are handled: bodies with a Content-Length, and
//! answers passed on as chunks.

use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use http_body_util::BodyExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The proxy, and what it does to the watches of `resource` (`numbers`).
pub struct WatchProxy {
    address: String,
    state: Arc<State>,
    _accepting: tokio::task::JoinHandle<()>,
}

struct State {
    client: kube::Client,
    resource: String,
    /// While set, the resource's watches are away: those open end, new ones wait.
    away: AtomicBool,
    /// How many watches wait now.
    held: AtomicUsize,
    /// Moves on when the open watches must end, and when the waiting ones are answered.
    cut: watch::Sender<u64>,
    back: watch::Sender<u64>,
}

/// The body of a watch event that says the watch's place in history is gone.
const EXPIRED: &str = r#"{"type":"ERROR","object":{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Failure","message":"too old resource version (the test's proxy)","reason":"Expired","code":410}}
"#;

impl WatchProxy {
    /// A proxy to the API server of `plane_dir` (its certificate and key),
    /// sending requests on with `client`, that can send `resource`'s watches away.
    pub async fn start(plane_dir: &Path, client: kube::Client, resource: &str) -> Result<WatchProxy> {
        let certificate = CertificateDer::from_pem_file(plane_dir.join("apiserver.crt"))
            .context("cannot read the API server's certificate")?;
        let key = PrivateKeyDer::from_pem_file(plane_dir.join("apiserver.key"))
            .context("cannot read the API server's key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![certificate], key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let state = Arc::new(State {
            client,
            resource: resource.to_string(),
            away: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            cut: watch::Sender::new(0),
            back: watch::Sender::new(0),
        });
        let serving = state.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), serving.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = serve(stream, &state).await;
                    }
                });
            }
        });
        Ok(WatchProxy {
            address,
            state,
            _accepting: accepting,
        })
    }

    /// A copy of `kubeconfig` whose server is this proxy, written at `path`.
    pub fn kubeconfig(&self, kubeconfig: &Path, path: &Path) -> Result<PathBuf> {
        crate::http_proxy::kubeconfig_through(kubeconfig, &self.address, path)
    }

    /// The resource's watches go away: those open end, and those opened
    /// again wait without an answer.
    pub fn send_away(&self) {
        self.state.away.store(true, Ordering::SeqCst);
        self.state.cut.send_modify(|cut| *cut += 1);
    }

    /// How many of the resource's watches wait for an answer now.
    pub fn held(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }

    /// The watches that waited are told that their place in history is
    /// gone (410), so that they list again; new ones pass.
    pub fn bring_back_expired(&self) {
        self.state.away.store(false, Ordering::SeqCst);
        self.state.back.send_modify(|back| *back += 1);
    }
}

/// Serves one connection's requests, one after the other.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: &State) -> Result<()> {
    let mut pending = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut stream, &mut pending).await? else {
            return Ok(());
        };
        let mut lines = head.lines();
        let mut request_line = lines.next().unwrap_or_default().split_whitespace();
        let (method, target) = (
            request_line.next().unwrap_or_default().to_string(),
            request_line.next().unwrap_or_default().to_string(),
        );
        let watch_of_resource = target.contains(&format!("/{}?", state.resource)) && target.contains("watch=true");
        if watch_of_resource && state.away.load(Ordering::SeqCst) {
            // Away: no answer until the watch is brought back, then 410.
            let mut back = state.back.subscribe();
            state.held.fetch_add(1, Ordering::SeqCst);
            let _ = back.changed().await;
            state.held.fetch_sub(1, Ordering::SeqCst);
            write_all(
                &mut stream,
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{EXPIRED}",
                    EXPIRED.len()
                )
                .as_bytes(),
            )
            .await?;
            continue;
        }
        let mut request = http::Request::builder().method(method.as_str()).uri(target.as_str());
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if !["host", "content-length", "connection", "transfer-encoding"].contains(&name.as_str()) {
                    request = request.header(name, value.trim());
                }
            }
        }
        let response = state.client.send(request.body(kube::client::Body::from(body))?).await?;
        let mut out = format!("HTTP/1.1 {}\r\n", response.status());
        for (name, value) in response.headers() {
            if !["content-length", "transfer-encoding", "connection"].contains(&name.as_str()) {
                out.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or_default()));
            }
        }
        out.push_str("Transfer-Encoding: chunked\r\n\r\n");
        write_all(&mut stream, out.as_bytes()).await?;
        let mut body = response.into_body();
        let mut cut = state.cut.subscribe();
        loop {
            let frame = tokio::select! {
                biased;
                // Sent away: the open watch ends as if the server closed it.
                Ok(()) = cut.changed(), if watch_of_resource => None,
                frame = body.frame() => frame,
            };
            let Some(frame) = frame else { break };
            if let Ok(data) = frame?.into_data()
                && !data.is_empty()
            {
                write_all(&mut stream, format!("{:x}\r\n", data.len()).as_bytes()).await?;
                write_all(&mut stream, &data).await?;
                write_all(&mut stream, b"\r\n").await?;
            }
        }
        write_all(&mut stream, b"0\r\n\r\n").await?;
    }
}

/// The next request's head (up to the blank line) and body (by its
/// Content-Length); `None` once the client has closed the connection.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    pending: &mut Vec<u8>,
) -> Result<Option<(String, Vec<u8>)>> {
    let mut buffer = [0u8; 16 * 1024];
    let end = loop {
        if let Some(at) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
            break at;
        }
        let read = read_some(stream, &mut buffer).await?;
        if read == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&pending[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while pending.len() < end + 4 + length {
        let read = read_some(stream, &mut buffer).await?;
        if read == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buffer[..read]);
    }
    let body = pending[end + 4..end + 4 + length].to_vec();
    pending.drain(..end + 4 + length);
    Ok(Some((head, body)))
}

async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut [u8]) -> std::io::Result<usize> {
    poll_fn(|cx| {
        let mut read = ReadBuf::new(buffer);
        Pin::new(&mut *stream)
            .poll_read(cx, &mut read)
            .map_ok(|()| read.filled().len())
    })
    .await
}

async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let written = poll_fn(|cx| Pin::new(&mut *stream).poll_write(cx, data)).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = &data[written..];
    }
    poll_fn(|cx| Pin::new(&mut *stream).poll_flush(cx)).await
}

/// A copy of `kubeconfig` whose server is `address` (a proxy's, on this
/// machine, which shows the API server's certificate), written at `path`.
pub fn kubeconfig_through(kubeconfig: &Path, address: &str, path: &Path) -> Result<PathBuf> {
    let mut config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    for cluster in config
        .clusters
        .iter_mut()
        .filter_map(|cluster| cluster.cluster.as_mut())
    {
        cluster.server = Some(format!("https://{address}"));
    }
    std::fs::write(path, serde_saphyr::to_string(&config)?)?;
    Ok(path.to_path_buf())
}
