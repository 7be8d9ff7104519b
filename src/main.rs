//! The `crossroom` command line.

use clap::{Parser, Subcommand};
use crossroom::config::{Config, LogFormat, Overrides};
use crossroom::shutdown::{os_signal, Shutdown};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "crossroom",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CROSSROOM_COMMIT"), ")"),
    about = "Real-time messaging server for external groups"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Copy a single node's data directory (database snapshot, file bytes, secrets) into DEST,
    /// owner-only, while the server runs or not. Restore: README "Running in production", step 4.
    Backup {
        /// Where the copy goes: made if missing; an earlier backup there is brought up to date
        dest: PathBuf,
        /// The server's data directory [default: ./crossroom-data]
        #[arg(long, env = "CROSSROOM_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The server's TOML configuration file (for its data_dir)
        #[arg(long, env = "CROSSROOM_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "CROSSROOM_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory (SQLite file, secrets) [default: ./crossroom-data]
    #[arg(long, env = "CROSSROOM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file; flags and environment override it
    #[arg(long, env = "CROSSROOM_CONFIG")]
    config: Option<PathBuf>,
    /// Operator API key [default: generated into DATA_DIR/operator.key]
    #[arg(long, env = "CROSSROOM_OPERATOR_KEY", hide_env_values = true)]
    operator_key: Option<String>,
    /// Secret that signs user tokens [default: generated into DATA_DIR/token.secret]
    #[arg(long, env = "CROSSROOM_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// Log format: human or json
    #[arg(long, env = "CROSSROOM_LOG_FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// Cluster mode: Redis URL(s), comma-separated (one: a single Redis; several: Redis
    /// Cluster seed nodes). Without it: the embedded SQLite store.
    #[arg(long, env = "CROSSROOM_REDIS", value_delimiter = ',')]
    redis: Vec<String>,
    /// Cluster mode: how long start-up keeps trying a Redis that does not answer, with
    /// backoff; 0 tries once [default: 30]
    #[arg(long, env = "CROSSROOM_REDIS_WAIT_SECS")]
    redis_wait_secs: Option<u64>,
    /// Seed two demo companies with users, contacts and a group, and print how to connect
    #[arg(long)]
    demo: bool,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected human or json".into()),
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `crossroom backup`: says what it copied, or why it could not.
fn backup(dest: PathBuf, data_dir: Option<PathBuf>, config: Option<PathBuf>) -> ExitCode {
    let overrides = Overrides {
        data_dir,
        ..Overrides::default()
    };
    let config = match Config::load(config.as_deref(), overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crossroom: {e}");
            return ExitCode::from(2);
        }
    };
    match crossroom::backup::run(&config, &dest) {
        Ok(s) => {
            println!(
                "backed up {} into {}: database {} bytes; {} files copied ({} bytes), {} already there",
                config.data_dir.display(),
                dest.display(),
                s.database_bytes,
                s.files_copied,
                s.bytes_copied,
                s.files_kept
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crossroom backup: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Backup {
            dest,
            data_dir,
            config,
        } => backup(dest, data_dir, config),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let ServeArgs {
        listen,
        data_dir,
        config,
        operator_key,
        token_secret,
        log_format,
        redis,
        redis_wait_secs,
        demo,
    } = args;
    let config = match Config::load(
        config.as_deref(),
        Overrides {
            listen,
            data_dir,
            operator_key,
            token_secret,
            log_format,
            redis: if redis.is_empty() { None } else { Some(redis) },
            redis_wait_secs,
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crossroom: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crossroom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| crossroom::server::ServerError::Listen(config.listen, e))?;
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        let drain_delay = std::time::Duration::from_secs(config.drain_delay_secs);
        tokio::spawn(async move {
            os_signal().await;
            // Not ready first; a second signal cuts the delay short.
            trigger.drain();
            if !drain_delay.is_zero() {
                tracing::info!(secs = drain_delay.as_secs(), "draining: /readyz says 503");
                tokio::select! {
                    _ = tokio::time::sleep(drain_delay) => {}
                    _ = os_signal() => {}
                }
            }
            trigger.trigger();
        });
        crossroom::server::run(config, listener, shutdown, move |started| async move {
            // Tests and scripts read this line to find the port.
            println!("crossroom listening on http://{}", started.addr);
            if demo {
                crossroom::demo::seed_and_print(&started).await;
            }
        })
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crossroom: {e}");
            ExitCode::FAILURE
        }
    }
}
