//! `streamguard-registry` binary: reads flags, file and environment, starts the
//! server, prints the bound address on stdout for scripts, and stops cleanly on
//! Ctrl-C or SIGTERM. Logs go to stderr so stdout stays machine-readable.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use streamguard_registry::{serve, Config, RegistryError, Seed};

const USAGE: &str = "\
Usage: streamguard-registry [--config FILE] [--addr HOST:PORT] [--db DATABASE] [--seed FILE]

  --config FILE     JSON config file (see README); environment variables override it
  --addr HOST:PORT  listen address (port 0 picks a free port)   [STREAMGUARD_REGISTRY_ADDR]
  --db DATABASE     sqlite:PATH (or a plain path), :memory:, or
                    postgres://USER[:PASSWORD]@HOST[:PORT]/DB    [STREAMGUARD_REGISTRY_DB]
  --seed FILE       providers to create on the database's first start [STREAMGUARD_REGISTRY_SEED]
  -h, --help        show this help
  -V, --version     show the version

Tokens come from STREAMGUARD_ADMIN_TOKEN, STREAMGUARD_SUPER_ADMIN_TOKEN and
STREAMGUARD_TELEMETRY_TOKEN (or the config file).";

#[derive(Debug, Default)]
struct Args {
    config: Option<PathBuf>,
    addr: Option<String>,
    db: Option<PathBuf>,
    seed: Option<PathBuf>,
}

enum Parsed {
    Run(Args),
    Exit(&'static str),
}

fn parse_args(mut raw: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut args = Args::default();
    while let Some(flag) = raw.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (flag.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| raw.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Exit(USAGE)),
            "-V" | "--version" => {
                return Ok(Parsed::Exit(concat!(
                    "streamguard-registry ",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            "--config" => args.config = Some(value()?.into()),
            "--addr" => args.addr = Some(value()?),
            "--db" => args.db = Some(value()?.into()),
            "--seed" => args.seed = Some(value()?.into()),
            other => return Err(format!("unknown argument '{other}'\n\n{USAGE}")),
        }
    }
    Ok(Parsed::Run(args))
}

fn build_config(args: Args) -> Result<Config, RegistryError> {
    let mut config = Config::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if let Some(addr) = args.addr {
        config.addr = addr
            .parse()
            .map_err(|e| RegistryError::Config(format!("--addr {addr}: {e}")))?;
    }
    if let Some(db) = args.db {
        config.db_path = db;
    }
    if let Some(seed) = args.seed {
        config.seed = Seed::File(seed);
    }
    config.validate()?;
    Ok(config)
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Exit(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("streamguard-registry: {message}");
            return ExitCode::from(2);
        }
    };
    let result = async {
        let config = build_config(args)?;
        let running = serve(config).await?;
        // Scripts and tests wait for exactly this line to learn the port.
        println!("streamguard-registry listening on {}", running.url());
        let _ = std::io::stdout().flush();
        running.run_until(stop_signal()).await?;
        tracing::info!("registry stopped");
        Ok::<(), RegistryError>(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamguard-registry: {e}");
            ExitCode::FAILURE
        }
    }
}
