//! The `portal-gate` command: parse the command line, load and validate the
//! config before binding any port, start tracing, and hand over to the
//! library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use clap::{Parser, Subcommand};
use portal_gate::config::Config;
use portal_gate::token::{self, Claims};

#[derive(Debug, Parser)]
#[command(name = "portal-gate", version, about = "A portal-gating reverse proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gate.
    Serve {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Listen on this address instead of the config's `listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Validate a config and print a summary.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Mint a token offline with the config's primary secret.
    Token {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The user's email address.
        #[arg(long)]
        email: String,
        /// The user's id in the customer's app.
        #[arg(long)]
        user_id: Option<String>,
        /// Lifetime in seconds (default: the config's `token_ttl`).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Print a new random secret (32 bytes, base64url).
    Secret,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, listen } => serve(config, listen),
        Command::Check { config } => check(config),
        Command::Token {
            config,
            email,
            user_id,
            ttl,
        } => mint(config, email, user_id, ttl),
        Command::Secret => secret(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portal-gate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: PathBuf, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let addr = listen.unwrap_or(config.listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!("portal-gate listening on http://{local}");
        portal_gate::run(listener, config, shutdown_signal()).await?;
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn check(config: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    print!("{}", config.summary());
    println!("ok");
    Ok(())
}

fn mint(
    config: PathBuf,
    email: String,
    user_id: Option<String>,
    ttl: Option<u64>,
) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    let email = email.trim().to_ascii_lowercase();
    anyhow::ensure!(
        portal_gate::token::is_plausible_email(&email),
        "--email {email:?} is not a valid email address"
    );
    if let Some(id) = &user_id {
        anyhow::ensure!(
            portal_gate::token::is_valid_user_id(id),
            "--user-id must match ^[a-zA-Z0-9:_-]{{1,255}}$"
        );
    }
    let ttl = ttl
        .map(Duration::from_secs)
        .unwrap_or(config.verification.token_ttl);
    anyhow::ensure!(!ttl.is_zero(), "--ttl must be at least 1 second");
    let now = portal_gate::gate::unix_now();
    let claims = Claims {
        account_id: config.verification.account_id.clone(),
        email,
        user_id,
        name: None,
        avatar_url: None,
        issued_at: now,
        expires_at: now.saturating_add(ttl.as_secs()),
    };
    let token = token::mint(config.secrets.primary(), &claims);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    Ok(())
}

fn secret() -> anyhow::Result<()> {
    use rand_core::RngCore;
    let mut bytes = [0u8; 32];
    rand_core::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
    println!(
        "{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    Ok(())
}
