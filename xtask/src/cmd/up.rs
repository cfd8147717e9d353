//! `cargo xtask up`: a local control plane in the background, and how to use it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::assets::{self, Assets};
use crate::{planes, say};

pub fn run() -> Result<ExitCode> {
    let dir = planes::attendee_dir()?;
    let assets = assets::locate_or_build()?;
    match planes::find(&assets, &dir) {
        planes::Found::Running => {
            let who = planes::started_by(&dir).unwrap_or_else(|| say!("started earlier", "以前に起動"));
            eprintln!(
                "{}",
                say!(
                    "A local control plane is already running in {} ({who}): this shell can use it.\n\
                     To run a second one beside it, give it a folder of its own:\n\
                     \n    MATH_CONTROLLER_CLUSTER=/tmp/my-plane cargo xtask up\n",
                    "ローカルコントロールプレーンは {} ですでに動いています（{who}）。このシェルからそのまま使えます。\n\
                     もう 1 つ並べて動かすときは、専用のフォルダーを指定します。\n\
                     \n    MATH_CONTROLLER_CLUSTER=/tmp/my-plane cargo xtask up\n",
                    dir.display()
                )
            );
            print_usage(&dir, &assets, None);
            return Ok(ExitCode::SUCCESS);
        }
        // Part of it died (a crash, a killed process, a reboot): start over.
        planes::Found::Broken { running, recorded } => eprintln!(
            "{}",
            say!(
                "The local control plane in {} does not answer ({} of its {recorded} processes run): \
                 starting a new one. The objects of the old one are lost.",
                "{} のローカルコントロールプレーンが応答しません（{recorded} 個のプロセスのうち {} 個が動いています）。\
                 新しく起動し直します。古いほうのオブジェクトは失われます。",
                dir.display(),
                running.len()
            )
        ),
        planes::Found::Nothing => {}
    }
    eprintln!(
        "{}",
        say!(
            "Starting etcd, kube-apiserver and kube-controller-manager in {}…",
            "{} で etcd、kube-apiserver、kube-controller-manager を起動しています…",
            dir.display()
        )
    );
    let server = planes::start(&assets, &dir, None)?;
    print_usage(&dir, &assets, Some(&server));
    Ok(ExitCode::SUCCESS)
}

fn print_usage(dir: &Path, assets: &Assets, server: Option<&str>) {
    if let Some(server) = server {
        println!(
            "{}",
            say!(
                "The local control plane is running: Kubernetes {}, etcd {}, API server at {server}.",
                "ローカルコントロールプレーンが動いています: Kubernetes {}、etcd {}、API サーバーは {server}。",
                assets::kubernetes_version(),
                assets::etcd_version()
            )
        );
    }
    println!(
        "{}",
        say!(
            "Use it from this shell:\n\
             \n    export KUBECONFIG={}\n    export PATH=\"{}:$PATH\"   # a kubectl of the same version\n\
             \nThen install a stage's CRDs and run the stage, for example:\n\
             \n    cargo run --example step01_crd -- crd | kubectl apply --server-side -f -\n    cargo run --example step01_crd\n\
             \nIt has no nodes, so Pods never run; custom resources, controllers and garbage collection all work.\n\
             Stop it with `cargo xtask down`.",
            "使うシェルで次の 2 行を実行してください。\n\
             \n    export KUBECONFIG={}\n    export PATH=\"{}:$PATH\"   # 同じバージョンの kubectl\n\
             \nそれから段階の CRD をインストールして、その段階を実行します。たとえば:\n\
             \n    cargo run --example step01_crd -- crd | kubectl apply --server-side -f -\n    cargo run --example step01_crd\n\
             \nノードがないので Pod は動きません。カスタムリソース、コントローラー、ガベージコレクションはすべて動きます。\n\
             止めるときは `cargo xtask down` です。",
            dir.join("kubeconfig").display(),
            assets.dir.display()
        )
    );
}
