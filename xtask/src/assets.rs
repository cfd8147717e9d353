//! The control-plane binaries: where they come from, and where they are kept.
//!
//! In order: the folder named by `KUBEBUILDER_ASSETS` (the convention of
//! controller-runtime's envtest); else this machine's cache, where an earlier
//! run left them; else the folder that controller-runtime's `setup-envtest`
//! fills, when it holds all four; else, on Linux, the pinned release
//! binaries downloaded from their official locations and checked against
//! their published checksums ([`crate::download`]); else (on macOS, or when
//! the download fails) a build from upstream source through the Go module
//! proxy. Both fill that cache, once per machine.
//!
//! The versions are the ones the wrapper modules in `xtask/go/` require.
//! kube-apiserver cannot be built with `go install k8s.io/kubernetes/...@v1.x`:
//! that module's go.mod requires its staging modules (k8s.io/api, …) at v0.0.0
//! and points them into its own repository. `xtask/go/kubernetes/go.mod`
//! replaces each one with its published release instead; before building we
//! check that its list still covers the release's own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// The binaries a control plane needs, by file name.
pub const BINARIES: [&str; 4] = ["etcd", "kube-apiserver", "kube-controller-manager", "kubectl"];

const KUBERNETES_GO_MOD: &str = include_str!("../go/kubernetes/go.mod");
const ETCD_GO_MOD: &str = include_str!("../go/etcd/go.mod");

/// A folder holding the four binaries.
#[derive(Clone, Debug)]
pub struct Assets {
    pub dir: PathBuf,
}

impl Assets {
    pub fn etcd(&self) -> PathBuf {
        self.dir.join("etcd")
    }
    pub fn kube_apiserver(&self) -> PathBuf {
        self.dir.join("kube-apiserver")
    }
    pub fn kube_controller_manager(&self) -> PathBuf {
        self.dir.join("kube-controller-manager")
    }
    pub fn kubectl(&self) -> PathBuf {
        self.dir.join("kubectl")
    }

    fn missing(&self) -> Vec<&'static str> {
        BINARIES
            .into_iter()
            .filter(|name| !self.dir.join(name).is_file())
            .collect()
    }
}

/// The Kubernetes release the local control plane runs.
pub fn kubernetes_version() -> String {
    required_version(KUBERNETES_GO_MOD, "k8s.io/kubernetes").unwrap_or_else(|| "unknown".into())
}

/// The etcd release the local control plane runs.
pub fn etcd_version() -> String {
    required_version(ETCD_GO_MOD, "go.etcd.io/etcd/server/v3").unwrap_or_else(|| "unknown".into())
}

/// Where this machine keeps what the tooling builds: `MATH_CONTROLLER_CACHE`,
/// else `$XDG_CACHE_HOME/math-controller`, else `~/.cache/math-controller`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MATH_CONTROLLER_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join(crate::catalogue::PROJECT));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow!("HOME is not set: set MATH_CONTROLLER_CACHE to a folder for the build cache"))?;
    Ok(PathBuf::from(home).join(".cache").join(crate::catalogue::PROJECT))
}

/// Finds the binaries if they are already there (built before, in
/// `KUBEBUILDER_ASSETS`, or in setup-envtest's folder), without building anything.
pub fn locate() -> Option<Assets> {
    if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS") {
        let assets = Assets {
            dir: PathBuf::from(dir),
        };
        return assets.missing().is_empty().then_some(assets);
    }
    let cached = Assets {
        dir: cache_folder().ok()?,
    };
    if cached.missing().is_empty() {
        return Some(cached);
    }
    envtest_folder().filter(|assets| assets.missing().is_empty())
}

/// Finds the binaries, building them if this machine has none yet.
pub fn locate_or_build() -> Result<Assets> {
    if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS") {
        let assets = Assets {
            dir: PathBuf::from(dir),
        };
        let missing = assets.missing();
        if !missing.is_empty() {
            bail!(
                "KUBEBUILDER_ASSETS ({}) lacks {}: add them there, or unset KUBEBUILDER_ASSETS to build all four from source",
                assets.dir.display(),
                missing.join(", ")
            );
        }
        return Ok(assets);
    }
    if let Some(assets) = locate() {
        return Ok(assets);
    }
    if let Some(envtest) = envtest_folder() {
        eprintln!(
            "setup-envtest's folder {} lacks {}, which runs the garbage collection of stages 3 and 4: \
             building all four from source instead.",
            envtest.dir.display(),
            envtest.missing().join(", ")
        );
    }
    let assets = Assets { dir: cache_folder()? };
    let Some(arch) = crate::download::linux_arch() else {
        build(&assets.dir, None)?;
        return Ok(assets);
    };
    let sources = crate::download::Sources::from_env();
    let why = match download(&assets.dir, &sources, arch) {
        Ok(()) => return Ok(assets),
        Err(err) => format!("{err:#}"),
    };
    eprintln!(
        "{}",
        crate::say!(
            "The release binaries could not be used ({why}): building them from source instead.",
            "リリース版のバイナリは使えませんでした（{why}）。代わりにソースからビルドします。"
        )
    );
    build(&assets.dir, None).with_context(|| {
        crate::say!(
            "the release binaries could not be used either ({why})",
            "リリース版のバイナリも使えませんでした（{why}）"
        )
    })?;
    Ok(assets)
}

/// Downloads the pinned release binaries into `target`, through a staging
/// folder, so that a failed download never leaves a half-filled cache.
fn download(target: &Path, sources: &crate::download::Sources, arch: &str) -> Result<()> {
    let kubernetes = kubernetes_version();
    let etcd = etcd_version();
    let staging = staging_folder(target)?;
    eprintln!(
        "{}",
        crate::say!(
            "Downloading the local control plane (Kubernetes {kubernetes}, etcd {etcd}, about 250 MB) from {}, \
             once for this machine; each file is checked against its published checksum. Later runs reuse {}.",
            "ローカルコントロールプレーン（Kubernetes {kubernetes}、etcd {etcd}、約 250 MB）を {} からダウンロードします。\
             このマシンで一度だけで、ファイルごとに公開されているチェックサムと照合します。次からは {} を使います。",
            sources.describe(),
            target.display()
        )
    );
    crate::download::fetch(sources, &kubernetes, &etcd, arch, staging.path())?;
    let staging = staging.keep();
    std::fs::rename(&staging, target).with_context(|| format!("cannot move the binaries into {}", target.display()))?;
    eprintln!(
        "{}",
        crate::say!(
            "The local control plane's binaries are the release's, in {}.",
            "ローカルコントロールプレーンのバイナリ（リリース版）は {} にあります。",
            target.display()
        )
    );
    Ok(())
}

/// An empty folder beside `target`, removed when dropped unless kept.
fn staging_folder(target: &Path) -> Result<tempfile::TempDir> {
    let parent = target.parent().context("the cache folder has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a folder in {}", parent.display()))
}

/// This machine's cache folder for the pinned versions.
fn cache_folder() -> Result<PathBuf> {
    Ok(cache_dir()?
        .join("bin")
        .join(format!("kubernetes-{}-etcd-{}", kubernetes_version(), etcd_version())))
}

/// The newest folder that setup-envtest filled for this machine's platform,
/// if any: `<store>/k8s/<version>-<os>-<arch>`.
fn envtest_folder() -> Option<Assets> {
    let store = envtest_store(
        std::env::consts::OS,
        std::env::var_os("HOME").map(PathBuf::from),
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
    )?;
    let names: Vec<String> = std::fs::read_dir(&store)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let platform = go_platform(std::env::consts::OS, std::env::consts::ARCH)?;
    let name = newest_envtest_version(&names, &platform)?;
    Some(Assets { dir: store.join(name) })
}

/// Where setup-envtest keeps its binaries, by its own rules: macOS
/// `~/Library/Application Support/io.kubebuilder.envtest`, others
/// `${XDG_DATA_HOME:-~/.local/share}/kubebuilder-envtest`; then `k8s`.
pub fn envtest_store(os: &str, home: Option<PathBuf>, xdg_data_home: Option<PathBuf>) -> Option<PathBuf> {
    let base = match os {
        "macos" => home?
            .join("Library")
            .join("Application Support")
            .join("io.kubebuilder.envtest"),
        _ => xdg_data_home
            .or_else(|| Some(home?.join(".local").join("share")))?
            .join("kubebuilder-envtest"),
    };
    Some(base.join("k8s"))
}

/// Rust's names for an OS and CPU, as Go (and setup-envtest) spell them.
pub fn go_platform(os: &str, arch: &str) -> Option<String> {
    let os = match os {
        "macos" => "darwin",
        "linux" => "linux",
        _ => return None,
    };
    let arch = match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => return None,
    };
    Some(format!("{os}-{arch}"))
}

/// Of folder names like `1.36.0-darwin-arm64`, the newest one for `platform`
/// that is recent enough for the stages.
pub fn newest_envtest_version<'a>(names: &'a [String], platform: &str) -> Option<&'a str> {
    names
        .iter()
        .filter_map(|name| {
            let version = name.strip_suffix(platform)?.strip_suffix('-')?;
            let numbers: Vec<u32> = version
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            (numbers.len() == 3 && numbers[0] == 1 && numbers[1] >= crate::catalogue::OLDEST_SERVER_MINOR)
                .then_some((numbers, name.as_str()))
        })
        .max()
        .map(|(_, name)| name)
}

/// The platforms other than this machine's that the binaries are built for,
/// to prove that the local control plane builds for laptops that are not
/// Linux (`cargo maint build --cross`). Nothing here can run them.
pub const CROSS_PLATFORMS: [(&str, &str); 2] = [("darwin", "arm64"), ("darwin", "amd64")];

/// Builds the four binaries for another platform (`GOOS`, `GOARCH`), once per
/// version, into the cache; returns their folder.
pub fn build_for(goos: &str, goarch: &str) -> Result<PathBuf> {
    let dir = cache_dir()?.join("bin").join(format!(
        "kubernetes-{}-etcd-{}-{goos}-{goarch}",
        kubernetes_version(),
        etcd_version()
    ));
    let assets = Assets { dir: dir.clone() };
    if !assets.missing().is_empty() {
        build(&dir, Some((goos, goarch)))?;
    }
    if goos == "darwin" {
        for binary in BINARIES {
            let bytes = std::fs::read(dir.join(binary)).with_context(|| format!("cannot read {binary}"))?;
            if !is_mach_o_64(&bytes) {
                bail!("{} is not a 64-bit Mach-O executable", dir.join(binary).display());
            }
        }
    }
    Ok(dir)
}

/// Whether `bytes` start like a 64-bit Mach-O file (macOS), little-endian.
pub fn is_mach_o_64(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xcf, 0xfa, 0xed, 0xfe])
}

/// Builds the four binaries into `target` (for `platform`, else this
/// machine's), through a staging folder so that an interrupted build never
/// leaves a half-filled cache behind.
fn build(target: &Path, platform: Option<(&str, &str)>) -> Result<()> {
    require_go()?;
    let kubernetes = kubernetes_version();
    let etcd = etcd_version();
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("go");
    check_replacements(&modules.join("kubernetes"), &kubernetes)?;

    let staging = staging_folder(target)?;

    eprintln!(
        "{}",
        crate::say!(
            "Building the local control plane (Kubernetes {kubernetes}, etcd {etcd}) from source, once for this machine.\n\
             It takes about 8 minutes on 2 cores; later runs reuse {}.",
            "ローカルコントロールプレーン（Kubernetes {kubernetes}、etcd {etcd}）をソースからビルドします。このマシンで一度だけです。\n\
             2 コアで約 8 分かかります。次からは {} を使います。",
            target.display()
        )
    );
    let version_flags = kubernetes_ldflags(&kubernetes);
    let steps = build_steps(&version_flags);
    for (index, (binary, module, package, ldflags)) in steps.into_iter().enumerate() {
        let (step, count) = (index + 1, steps.len());
        eprintln!(
            "{}",
            crate::say!(
                "[{step}/{count}] building {binary}…",
                "[{step}/{count}] {binary} をビルドしています…"
            )
        );
        let mut go = Command::new("go");
        if let Some((goos, goarch)) = platform {
            go.env("GOOS", goos).env("GOARCH", goarch);
        }
        go.current_dir(modules.join(module))
            .env("CGO_ENABLED", "0")
            .args(["build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o"])
            .arg(staging.path().join(binary))
            .arg(package);
        go_build(&mut go, binary, package)?;
    }
    let staging = staging.keep();
    std::fs::rename(&staging, target).with_context(|| format!("cannot move the binaries into {}", target.display()))?;
    Ok(())
}

/// An error that says how to get Go, unless `go version` runs.
fn require_go() -> Result<()> {
    let go = Command::new("go").arg("version").output();
    match go {
        Ok(output) if output.status.success() => Ok(()),
        _ => bail!(
            "{}",
            crate::say!(
                "Go is needed once to build the local control plane: install Go 1.26 or later, \
                 or set KUBEBUILDER_ASSETS to a folder with {}",
                "ローカルコントロールプレーンをビルドするには、一度だけ Go が必要です。Go 1.26 以降をインストールするか、\
                 KUBEBUILDER_ASSETS に {} があるフォルダーを指定してください",
                BINARIES.join(", ")
            )
        ),
    }
}

/// What to build, in order: each binary with its wrapper module in
/// `xtask/go/`, its Go package and its linker flags.
fn build_steps(version_flags: &str) -> [(&'static str, &'static str, &'static str, &str); 4] {
    [
        ("etcd", "etcd", ".", ""),
        (
            "kube-apiserver",
            "kubernetes",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            version_flags,
        ),
        (
            "kube-controller-manager",
            "kubernetes",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            version_flags,
        ),
        ("kubectl", "kubernetes", "k8s.io/kubernetes/cmd/kubectl", version_flags),
    ]
}

/// Runs the `go build` of one binary to its end, its output on the
/// terminal, saying once a minute that it is still at work and at the end
/// how long it took.
fn go_build(go: &mut Command, binary: &str, package: &str) -> Result<()> {
    let started = Instant::now();
    let mut child = go.stdin(Stdio::null()).spawn().context("cannot start `go build`")?;
    let mut next_report = Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= next_report {
            let seconds = started.elapsed().as_secs();
            eprintln!(
                "{}",
                crate::say!(
                    "      still building {binary} ({seconds} s)",
                    "      {binary} をビルド中です（{seconds} 秒）"
                )
            );
            next_report += Duration::from_secs(60);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        bail!(
            "`go build {package}` failed (its output is above); the Go module proxy must be reachable for the first build"
        );
    }
    eprintln!("      built {binary} in {} s", started.elapsed().as_secs());
    Ok(())
}

/// The linker flags that make `/version` and `kubectl version` tell the truth.
fn kubernetes_ldflags(version: &str) -> String {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next().unwrap_or("0");
    let minor = parts.next().unwrap_or("0");
    ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]
        .iter()
        .flat_map(|package| {
            [
                format!("-X {package}.gitVersion={version}"),
                format!("-X {package}.gitMajor={major}"),
                format!("-X {package}.gitMinor={minor}"),
                format!("-X {package}.gitTreeState=clean"),
            ]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks that the wrapper go.mod replaces every staging module that the
/// release itself points into its repository.
fn check_replacements(module_dir: &Path, version: &str) -> Result<()> {
    let output = Command::new("go")
        .current_dir(module_dir)
        .args(["mod", "download", "-json", &format!("k8s.io/kubernetes@{version}")])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run `go mod download`")?;
    if !output.status.success() {
        bail!("cannot download k8s.io/kubernetes@{version} from the Go module proxy (see above)");
    }
    let go_mod_path =
        go_mod_path(&String::from_utf8_lossy(&output.stdout)).context("`go mod download -json` named no go.mod")?;
    let upstream = std::fs::read_to_string(&go_mod_path).with_context(|| format!("cannot read {go_mod_path}"))?;
    let missing: Vec<String> = staging_modules(&upstream)
        .difference(&replaced_modules(KUBERNETES_GO_MOD))
        .cloned()
        .collect();
    if !missing.is_empty() {
        bail!(
            "xtask/go/kubernetes/go.mod does not replace {} that k8s.io/kubernetes@{version} needs: \
             add `<module> => <module> v0.<minor>.<patch>` lines for them",
            missing.join(", ")
        );
    }
    Ok(())
}

/// The version `go_mod` requires of `module`.
pub fn required_version(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let mut words = line.trim().trim_start_matches("require").split_whitespace();
        (words.next() == Some(module))
            .then(|| words.next().map(str::to_string))
            .flatten()
    })
}

/// The modules that `go_mod` replaces (the left side of each `=>`).
pub fn replaced_modules(go_mod: &str) -> BTreeSet<String> {
    go_mod
        .lines()
        .filter(|line| line.contains("=>"))
        .filter_map(|line| {
            line.trim()
                .trim_start_matches("replace")
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect()
}

/// The modules that the kubernetes go.mod points into its `./staging` folder.
pub fn staging_modules(go_mod: &str) -> BTreeSet<String> {
    replaced_modules(
        &go_mod
            .lines()
            .filter(|line| line.contains("=> ./staging/"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The `GoMod` path in the JSON that `go mod download -json` prints.
fn go_mod_path(json: &str) -> Option<String> {
    let info: serde_json::Value = serde_json::from_str(json).ok()?;
    info["GoMod"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_versions_are_read_from_the_wrapper_modules() {
        assert!(kubernetes_version().starts_with("v1."));
        assert!(etcd_version().starts_with("v3."));
    }

    #[test]
    fn the_wrapper_replaces_each_staging_module_with_the_matching_release() {
        let minor_patch = kubernetes_version().trim_start_matches("v1").to_string();
        let replaced = replaced_modules(KUBERNETES_GO_MOD);
        assert!(replaced.contains("k8s.io/api") && replaced.contains("k8s.io/apiserver"));
        for line in KUBERNETES_GO_MOD.lines().filter(|line| line.contains("=>")) {
            assert!(line.trim_end().ends_with(&format!("v0{minor_patch}")), "{line}");
        }
    }

    #[test]
    fn staging_modules_are_the_ones_pointed_into_the_repository() {
        let upstream =
            "replace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)";
        assert_eq!(staging_modules(upstream), BTreeSet::from(["k8s.io/api".to_string()]));
    }

    #[test]
    fn required_versions_are_found_inside_and_outside_require_blocks() {
        assert_eq!(
            required_version("require a/b v1.2.3\n", "a/b").as_deref(),
            Some("v1.2.3")
        );
        assert_eq!(
            required_version("require (\n\ta/b v1.2.3 // indirect\n)", "a/b").as_deref(),
            Some("v1.2.3")
        );
        assert_eq!(required_version("require a/bc v1.2.3\n", "a/b"), None);
    }

    #[test]
    fn the_go_mod_path_is_read_from_go_mod_download_output() {
        let json = "{\n\t\"Path\": \"k8s.io/kubernetes\",\n\t\"GoMod\": \"/cache/k8s.io/kubernetes/@v/v1.36.3.mod\"\n}";
        assert_eq!(
            go_mod_path(json).as_deref(),
            Some("/cache/k8s.io/kubernetes/@v/v1.36.3.mod")
        );
    }

    #[test]
    fn version_flags_name_major_and_minor() {
        let flags = kubernetes_ldflags("v1.36.3");
        assert!(flags.contains("-X k8s.io/component-base/version.gitVersion=v1.36.3"));
        assert!(flags.contains("-X k8s.io/component-base/version.gitMinor=36"));
    }

    #[test]
    fn setup_envtest_folders_follow_its_own_rules() {
        let home = Some(PathBuf::from("/home/a"));
        assert_eq!(
            envtest_store("macos", home.clone(), None).unwrap(),
            Path::new("/home/a/Library/Application Support/io.kubebuilder.envtest/k8s")
        );
        assert_eq!(
            envtest_store("linux", home.clone(), None).unwrap(),
            Path::new("/home/a/.local/share/kubebuilder-envtest/k8s")
        );
        assert_eq!(
            envtest_store("linux", home, Some(PathBuf::from("/data"))).unwrap(),
            Path::new("/data/kubebuilder-envtest/k8s")
        );
        assert_eq!(envtest_store("macos", None, None), None);
        assert_eq!(go_platform("macos", "aarch64").as_deref(), Some("darwin-arm64"));
        assert_eq!(go_platform("linux", "x86_64").as_deref(), Some("linux-amd64"));
        assert_eq!(go_platform("windows", "x86_64"), None);
    }

    #[test]
    fn the_newest_recent_envtest_version_for_this_platform_is_chosen() {
        let names: Vec<String> = [
            "1.32.0-darwin-arm64",
            "1.34.1-darwin-arm64",
            "1.36.0-darwin-amd64",
            "1.35.0-darwin-arm64",
            "1.9.0-darwin-arm64",
            "notes.txt",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            newest_envtest_version(&names, "darwin-arm64"),
            Some("1.35.0-darwin-arm64")
        );
        assert_eq!(
            newest_envtest_version(&names, "darwin-amd64"),
            Some("1.36.0-darwin-amd64")
        );
        assert_eq!(newest_envtest_version(&names, "linux-amd64"), None);
        let old = vec!["1.32.9-linux-amd64".to_string()];
        assert_eq!(newest_envtest_version(&old, "linux-amd64"), None);
    }

    #[test]
    fn a_mach_o_file_is_told_from_an_elf_one() {
        assert!(is_mach_o_64(&[0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0x00, 0x00, 0x01]));
        assert!(!is_mach_o_64(b"\x7fELF\x02\x01\x01"));
    }
}
