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
use portal_gate::token::{self, AttrValue, Attributes, ClaimError, Claims};
use portal_gate::Clock;
use portal_gate::Config;

/// mimalloc: fewer cycles per allocation than glibc's malloc on the request
/// path (about 6 % less CPU per proxied request), at the price of more
/// resident memory per idle connection (docs/benchmarks.md has both).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often each runtime thread asks mimalloc to hand back what it has
/// freed. mimalloc returns freed pages to the OS only when the thread that
/// freed them allocates again; a gate that goes quiet after a burst of
/// connections would otherwise keep its peak for ever.
const RETURN_MEMORY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Run on every runtime thread, for the life of the process: collect this
/// thread's mimalloc heap every [`RETURN_MEMORY_EVERY`] (a few µs when
/// there is nothing to do).
async fn return_freed_memory() {
    let mut tick = tokio::time::interval(RETURN_MEMORY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // SAFETY: mi_collect takes no pointers; it frees what the calling
        // thread's heap no longer uses and purges what is due. `false`: no
        // forced decommit of what is still in use nearby.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

#[derive(Debug, Parser)]
#[command(name = "portal-gate", version, about = "A portal-gating reverse proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The TOML config file.
    #[arg(long, short)]
    config: PathBuf,
    /// Listen on this address instead of the config's `listen`.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Reload when the config, a `file =` secret or the TLS files change
    /// (SIGHUP always reloads).
    #[arg(long)]
    watch: bool,
    /// Log lines for people or for machines.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    /// Log level or filter (`info`, `warn`, `portal_gate=debug`); `RUST_LOG`
    /// is used when this is not given.
    #[arg(long)]
    log_level: Option<String>,
    /// Worker threads, each with its own event loop (default: one per core
    /// the process may use).
    #[arg(long)]
    threads: Option<std::num::NonZeroUsize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gate.
    Serve(ServeArgs),
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
        #[command(flatten)]
        claims: ClaimArgs,
    },
    /// Print a new random secret (32 bytes, base64url).
    Secret,
    /// Show which rule governs a path, why, and the decision for a user.
    Explain {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The request path (a query is ignored, as the gate ignores it).
        path: String,
        /// The request method (names are case-sensitive, as in HTTP).
        #[arg(long, default_value = "GET")]
        method: String,
        /// Decide for a verified user with this email.
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        claims: ClaimArgs,
    },
}

/// Groups and attributes of a user, as the token API takes them.
#[derive(clap::Args, Debug)]
struct ClaimArgs {
    /// A group the user is in (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// An attribute of the user, `key=value` (repeatable; a key given
    /// twice holds a list).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attributes: Vec<String>,
}

impl ClaimArgs {
    /// Puts the groups and attributes into `claims`, checked as the token
    /// API checks them.
    fn apply(self, claims: &mut Claims) -> anyhow::Result<()> {
        let mut attributes: Vec<(String, Vec<String>)> = Vec::new();
        for pair in self.attributes {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--attr {pair:?}: write it as key=value"))?;
            match attributes.iter_mut().find(|(k, _)| k == key) {
                Some((_, values)) => values.push(value.to_owned()),
                None => attributes.push((key.to_owned(), vec![value.to_owned()])),
            }
        }
        claims.groups = self.groups;
        claims.attributes = attributes
            .into_iter()
            .map(|(key, mut values)| match values.len() {
                1 => (key, AttrValue::One(values.remove(0))),
                _ => (key, AttrValue::Many(values)),
            })
            .collect::<Attributes>();
        claims.validate().map_err(flag_error)
    }
}

/// A claim error, named by the flag that set the claim.
fn flag_error(e: ClaimError) -> anyhow::Error {
    let flag = match &e {
        ClaimError::AccountId => "the config's account_id".to_owned(),
        ClaimError::Email => "--email".to_owned(),
        ClaimError::UserId => "--user-id".to_owned(),
        ClaimError::TooManyGroups | ClaimError::Group(_) => format!("--group ({})", e.field()),
        _ => format!("--attr ({})", e.field()),
    };
    anyhow::anyhow!("{flag} {e}")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check { config } => check(config),
        Command::Token {
            config,
            email,
            user_id,
            ttl,
            claims,
        } => mint(config, email, user_id, ttl, claims),
        Command::Secret => secret(),
        Command::Explain {
            config,
            path,
            method,
            email,
            claims,
        } => explain(config, path, method, email, claims),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portal-gate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    config.require_upstream()?;
    init_logging(args.log_format, args.log_level.as_deref())?;
    let addr = args.listen.unwrap_or(config.listen());
    let scheme = if config.uses_tls() { "https" } else { "http" };
    // Thread-per-core: this thread is worker 0 and accepts; the others
    // take connections in turn (see the `workers` module).
    let threads = args.threads.map_or_else(
        portal_gate::Workers::default_count,
        std::num::NonZeroUsize::get,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let workers =
        portal_gate::Workers::start(threads - 1).context("cannot start the worker threads")?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let gate = std::sync::Arc::new(portal_gate::Gate::with_workers(config, threads)?);
        let shutdown = shutdown_signal()?;
        tokio::spawn(return_freed_memory());
        for worker in workers.handles() {
            worker.spawn(return_freed_memory());
        }
        #[cfg(unix)]
        match portal_gate::ops::on_sighup(std::sync::Arc::clone(&gate)) {
            Ok(reloads) => {
                tokio::spawn(reloads);
            }
            Err(error) => tracing::error!(%error, "cannot listen for SIGHUP; reload by signal is off"),
        }
        if args.watch {
            let watched = std::sync::Arc::clone(&gate);
            tokio::spawn(portal_gate::ops::watch_files(watched, portal_gate::ops::WATCH_INTERVAL));
        }
        if let Some(admin_addr) = gate.config().admin() {
            let admin = tokio::net::TcpListener::bind(admin_addr)
                .await
                .with_context(|| format!("cannot listen on {admin_addr} (admin)"))?;
            tracing::info!("admin listening on http://{}", admin.local_addr()?);
            tokio::spawn(portal_gate::ops::probe_upstream(std::sync::Arc::clone(&gate)));
            tokio::spawn(portal_gate::ops::serve_admin(admin, std::sync::Arc::clone(&gate), std::future::pending()));
        }
        tracing::info!(version = %gate.config().version(), threads, "portal-gate listening on {scheme}://{local}");
        portal_gate::serve_on(listener, gate, workers.handles(), shutdown).await?;
        Ok(())
    });
    workers.stop();
    runtime.shutdown_timeout(portal_gate::Workers::BLOCKING_WAIT);
    served
}

/// Logs to stderr: colours only on a terminal, never a token or secret.
fn init_logging(format: LogFormat, level: Option<&str>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter = match level {
        Some(level) => tracing_subscriber::EnvFilter::try_new(level)
            .with_context(|| format!("--log-level {level:?}"))?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

/// Take Ctrl-C and SIGTERM over now, so that a signal sent as soon as the
/// gate says it is listening shuts it down gracefully; the future
/// completes on either.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

fn check(config: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    print!("{}", config.summary());
    for warning in config.warnings(std::time::SystemTime::now()) {
        println!("warning: {warning}");
    }
    println!("ok");
    Ok(())
}

fn mint(
    config: PathBuf,
    email: String,
    user_id: Option<String>,
    ttl: Option<u64>,
    extra: ClaimArgs,
) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    let ttl = ttl.map(Duration::from_secs).unwrap_or(config.token_ttl());
    anyhow::ensure!(!ttl.is_zero(), "--ttl must be at least 1 second");
    let account_id = config.account_id().to_string();
    let now = portal_gate::SystemClock.unix_now();
    let mut claims =
        Claims::for_user(account_id, &email, user_id, now, ttl.as_secs()).map_err(flag_error)?;
    extra.apply(&mut claims)?;
    let token = token::mint(config.secrets().primary(), &claims);
    anyhow::ensure!(
        token.len() <= config.max_token_len(),
        "the token would be {} bytes, more than limits.max_token_len ({}): the gate would \
         refuse it; send fewer or shorter groups and attributes",
        token.len(),
        config.max_token_len()
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    Ok(())
}

fn explain(
    config: PathBuf,
    path: String,
    method: String,
    email: Option<String>,
    extra: ClaimArgs,
) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| anyhow::anyhow!("--method {method:?} is not an HTTP method"))?;
    let user = match email {
        Some(email) => {
            let account = config.account_id().to_owned();
            let mut claims = Claims::for_user(account, &email, None, 0, 0).map_err(flag_error)?;
            extra.apply(&mut claims)?;
            Some(claims)
        }
        None if extra.groups.is_empty() && extra.attributes.is_empty() => None,
        None => anyhow::bail!("--group and --attr describe a user: pass --email too"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let explained = runtime.block_on(async {
        let gate = portal_gate::Gate::new(config)?;
        Ok::<_, std::io::Error>(gate.explain(&method, &path, user.as_ref()).await)
    })?;
    print!("{explained}");
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
