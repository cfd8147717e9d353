//! `cargo xtask tree`: the ownership tree of a namespace, live in the
//! terminal, or once as text with `--once`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::say;
use crate::tree_live;

#[derive(clap::Args, Debug)]
pub struct Options {
    #[arg(long, short, value_name = "NS", help = say!(
        "the namespace (default: the kubeconfig context's)",
        "ネームスペース（省略時は kubeconfig のコンテキストのもの）"
    ))]
    namespace: Option<String>,
    #[arg(long, help = say!("print the tree once, as text", "ツリーを 1 回だけテキストで表示"))]
    once: bool,
    #[arg(long, requires = "once", help = say!(
        "with --once: wait until everything has settled, then print",
        "--once と一緒に: すべてが落ち着くまで待ってから表示"
    ))]
    wait_settled: bool,
    #[arg(long, value_name = "SECONDS", default_value_t = 60, help = say!(
        "how long --wait-settled waits",
        "--wait-settled が待つ秒数"
    ))]
    timeout: u64,
}

pub fn run(options: Options) -> Result<ExitCode> {
    let options = tree_live::Options {
        namespace: options.namespace,
        once: options.once,
        wait_settled: options.wait_settled,
        timeout: Duration::from_secs(options.timeout),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(tree_live::run(options))?;
    Ok(ExitCode::SUCCESS)
}
