//! The control-plane binaries from a mirror on this machine laid out like
//! their official locations (Kubernetes' download site, etcd's GitHub
//! releases), which cannot be reached from here: the files served are this
//! machine's binaries, or small stand-ins, with checksums made for them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use xtask::download::{Sources, fetch, sha256_hex};

const KUBERNETES: &str = "v1.36.3";
const ETCD: &str = "v3.6.16";
const ARCH: &str = "amd64";

/// What the mirror answers for a path.
#[derive(Clone)]
enum Served {
    Whole(Vec<u8>),
    /// The full length announced, the connection closed after this many bytes.
    CutAt(Vec<u8>, usize),
}

/// An HTTP server on 127.0.0.1 that serves files by path.
struct Mirror {
    port: u16,
    files: Arc<Mutex<HashMap<String, Served>>>,
}

impl Mirror {
    fn start() -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Mutex<HashMap<String, Served>>> = Arc::default();
        let served = files.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let files = served.clone();
                std::thread::spawn(move || answer(stream, &files));
            }
        });
        Mirror { port, files }
    }

    fn sources(&self) -> Sources {
        Sources {
            kubernetes: format!("http://127.0.0.1:{}/k8s", self.port),
            etcd: format!("http://127.0.0.1:{}/etcd", self.port),
        }
    }

    fn serve(&self, path: &str, served: Served) {
        self.files.lock().unwrap().insert(path.to_string(), served);
    }

    /// The four binaries, as the official locations lay them out, each
    /// with its checksum file; etcd in its release tarball.
    fn serve_release(&self, binaries: &HashMap<&str, Vec<u8>>) {
        for name in ["kube-apiserver", "kube-controller-manager", "kubectl"] {
            let path = format!("/k8s/{KUBERNETES}/bin/linux/{ARCH}/{name}");
            self.serve(
                &format!("{path}.sha256"),
                Served::Whole(sha256_hex(&binaries[name]).into_bytes()),
            );
            self.serve(&path, Served::Whole(binaries[name].clone()));
        }
        let tarball = etcd_tarball(&binaries["etcd"]);
        let name = format!("etcd-{ETCD}-linux-{ARCH}.tar.gz");
        let sums = format!(
            "{}  etcd-{ETCD}-darwin-arm64.zip\n{}  {name}\n",
            sha256_hex(b"other"),
            sha256_hex(&tarball)
        );
        self.serve(&format!("/etcd/{ETCD}/SHA256SUMS"), Served::Whole(sums.into_bytes()));
        self.serve(&format!("/etcd/{ETCD}/{name}"), Served::Whole(tarball));
    }
}

fn answer(mut stream: TcpStream, files: &Mutex<HashMap<String, Served>>) {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return,
        }
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split_whitespace().nth(1).unwrap_or_default().to_string();
    let served = files.lock().unwrap().get(&path).cloned();
    let (body, sent) = match served {
        None => {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        Some(Served::Whole(body)) => {
            let length = body.len();
            (body, length)
        }
        Some(Served::CutAt(body, at)) => (body, at),
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body[..sent]);
}

/// `etcd-VERSION-linux-ARCH.tar.gz` holding `etcd` in its folder, as etcd's
/// releases are packed.
fn etcd_tarball(etcd: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let folder = format!("etcd-{ETCD}-linux-{ARCH}");
    std::fs::create_dir(dir.path().join(&folder)).unwrap();
    std::fs::write(dir.path().join(&folder).join("etcd"), etcd).unwrap();
    std::fs::write(dir.path().join(&folder).join("README.md"), "etcd").unwrap();
    let status = Command::new("tar")
        .current_dir(dir.path())
        .args(["-czf", "release.tar.gz", &folder])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(dir.path().join("release.tar.gz")).unwrap()
}

/// Small stand-ins for the four binaries: the download does not look inside.
fn stand_ins() -> HashMap<&'static str, Vec<u8>> {
    xtask::assets::BINARIES
        .into_iter()
        .map(|name| (name, format!("#!/bin/sh\necho {name}\n").repeat(5000).into_bytes()))
        .collect()
}

fn fetch_into(sources: &Sources) -> (tempfile::TempDir, anyhow::Result<()>) {
    let dir = tempfile::tempdir().unwrap();
    let result = fetch(sources, KUBERNETES, ETCD, ARCH, dir.path());
    (dir, result)
}

#[test]
fn the_four_binaries_arrive_checked_and_executable() {
    let mirror = Mirror::start();
    let binaries = stand_ins();
    mirror.serve_release(&binaries);
    let (dir, result) = fetch_into(&mirror.sources());
    result.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, xtask::assets::BINARIES.map(String::from));
    for name in xtask::assets::BINARIES {
        assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), binaries[name], "{name}");
        let output = Command::new(dir.path().join(name)).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout).lines().next(), Some(name));
    }
}

#[test]
fn a_binary_that_does_not_match_its_checksum_is_refused() {
    let mirror = Mirror::start();
    let binaries = stand_ins();
    mirror.serve_release(&binaries);
    let path = format!("/k8s/{KUBERNETES}/bin/linux/{ARCH}/kube-controller-manager");
    mirror.serve(
        &path,
        Served::Whole(b"#!/bin/sh\necho not what was published\n".to_vec()),
    );
    let err = format!("{:#}", fetch_into(&mirror.sources()).1.unwrap_err());
    assert!(
        err.contains(&format!("{path} does not match its published checksum")),
        "{err}"
    );
}

#[test]
fn an_etcd_release_without_its_checksum_is_refused() {
    let mirror = Mirror::start();
    mirror.serve_release(&stand_ins());
    mirror.serve(
        &format!("/etcd/{ETCD}/SHA256SUMS"),
        Served::Whole(b"abcd  something-else.tar.gz\n".to_vec()),
    );
    let err = format!("{:#}", fetch_into(&mirror.sources()).1.unwrap_err());
    assert!(
        err.contains(&format!("has no checksum for etcd-{ETCD}-linux-{ARCH}.tar.gz")),
        "{err}"
    );
}

#[test]
fn a_download_cut_short_is_refused() {
    let mirror = Mirror::start();
    let binaries = stand_ins();
    mirror.serve_release(&binaries);
    let bytes = binaries["kube-apiserver"].clone();
    let half = bytes.len() / 2;
    mirror.serve(
        &format!("/k8s/{KUBERNETES}/bin/linux/{ARCH}/kube-apiserver"),
        Served::CutAt(bytes, half),
    );
    let err = format!("{:#}", fetch_into(&mirror.sources()).1.unwrap_err());
    assert!(err.contains("was cut short"), "{err}");
}

#[test]
fn an_unreachable_host_is_told() {
    // A port that was just free: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sources = Sources {
        kubernetes: format!("http://127.0.0.1:{port}/k8s"),
        etcd: format!("http://127.0.0.1:{port}/etcd"),
    };
    let err = format!("{:#}", fetch_into(&sources).1.unwrap_err());
    assert!(
        err.contains(&format!("cannot reach http://127.0.0.1:{port}/k8s/")),
        "{err}"
    );
}

/// `PATH` without the folders that hold `go`: a machine without Go.
fn path_without_go() -> OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("go").exists())
        .collect();
    let kept = std::env::join_paths(kept).unwrap();
    assert!(
        std::env::split_paths(&kept).any(|dir| dir.join("tar").exists()),
        "tar shares a folder with go on this machine: this test needs it without Go"
    );
    kept
}

/// `cargo xtask ARGS` on a machine without Go, with its cache, its plane's
/// folder and setup-envtest's folder in `home`, and the releases at `sources`.
fn xtask(home: &Path, sources: &Sources, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("PATH", path_without_go())
        .env("MATH_CONTROLLER_CACHE", home.join("cache"))
        .env("MATH_CONTROLLER_CLUSTER", home.join("plane"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("HOME", home)
        .env("MATH_CONTROLLER_LANG", "en")
        .env(xtask::download::KUBERNETES_RELEASES_ENV, &sources.kubernetes)
        .env(xtask::download::ETCD_RELEASES_ENV, &sources.etcd)
        .env_remove("KUBEBUILDER_ASSETS")
        .env_remove("XDG_CACHE_HOME")
        .current_dir(xtask::repository_root())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn without_go_a_bad_download_says_why_and_what_to_do_and_leaves_nothing() {
    let mirror = Mirror::start();
    mirror.serve_release(&stand_ins());
    let path = format!("/k8s/{KUBERNETES}/bin/linux/{ARCH}/kubectl.sha256");
    mirror.serve(&path, Served::Whole(sha256_hex(b"another kubectl").into_bytes()));
    let home = tempfile::tempdir().unwrap();
    let output = xtask(home.path(), &mirror.sources(), &["build"]);
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("does not match its published checksum"), "{said}");
    assert!(said.contains("building them from source instead"), "{said}");
    assert!(
        said.contains("Go is needed once to build the local control plane"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    let left: Vec<_> = std::fs::read_dir(home.path().join("cache/bin"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

/// Stops the plane that `cargo xtask up` started, however the test ends.
struct Down<'a>(&'a Path, Sources);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        xtask(self.0, &self.1, &["down"]);
    }
}

#[test]
fn up_on_a_machine_without_go_runs_the_release_binaries_from_the_mirror() {
    let Some(built) = xtask::assets::locate() else {
        panic!("this test serves this machine's control-plane binaries: run `cargo xtask build` first");
    };
    let binaries: HashMap<&str, Vec<u8>> = xtask::assets::BINARIES
        .into_iter()
        .map(|name| (name, std::fs::read(built.dir.join(name)).unwrap()))
        .collect();
    let mirror = Mirror::start();
    mirror.serve_release(&binaries);
    let home = tempfile::tempdir().unwrap();
    let _down = Down(home.path(), mirror.sources());
    let output = xtask(home.path(), &mirror.sources(), &["up"]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    for name in xtask::assets::BINARIES {
        assert!(said.contains(&format!("  {name} (")), "{name} not told: {said}");
    }
    assert!(said.contains("checksum ✓"), "{said}");
    assert!(said.contains("The local control plane is running"), "{said}");
    let cached = home
        .path()
        .join("cache/bin")
        .join(format!("kubernetes-{KUBERNETES}-etcd-{ETCD}"));
    for name in xtask::assets::BINARIES {
        assert!(
            std::fs::read(cached.join(name)).unwrap() == binaries[name],
            "{name} differs"
        );
    }
    let namespaces = Command::new(cached.join("kubectl"))
        .arg("--kubeconfig")
        .arg(home.path().join("plane/kubeconfig"))
        .args(["get", "namespace", "default", "-o", "name"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&namespaces.stdout).trim(),
        "namespace/default",
        "{}",
        text(&namespaces)
    );
}

#[test]
fn the_mirror_serves_the_pinned_versions() {
    assert_eq!(KUBERNETES, xtask::assets::kubernetes_version());
    assert_eq!(ETCD, xtask::assets::etcd_version());
}
