//! The configuration: read once from TOML, validated whole, then immutable.
//!
//! Two stages, as the rest of the crate expects: [`RawConfig`] is what serde
//! reads (unknown keys are errors, no I/O), and [`Config`] is the validated,
//! compiled form (a [`SecretRing`], a [`RuleSet`], parsed durations and
//! addresses). Every error names the file, the line and the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::access::rules::{Access, RuleSet};
use crate::token::keys::SecretRing;

mod compile;
mod raw;
mod warnings;

/// The largest config file read, so a wrong path (say, a device) cannot
/// exhaust memory.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: PathBuf,
    /// 1-based line, when the error points at one.
    pub line: Option<usize>,
    /// The key at fault, when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// What the gate does with a path that no page rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DefaultAccess {
    /// Only verified users (the default: fail closed).
    Restricted,
    /// Anyone.
    Public,
}

impl DefaultAccess {
    /// The access of a path no rule matches.
    pub(crate) fn access(self) -> Access {
        match self {
            DefaultAccess::Restricted => Access::Verified,
            DefaultAccess::Public => Access::Public,
        }
    }
}

/// The config the unit tests share: a live and a retired secret, a public
/// root, `/docs/**` for verified users, `/staff/**` for example.com,
/// `/beta/**` for group beta and plan pro, `/docs/**` POSTs for group
/// editors, and no upstream.
#[cfg(test)]
pub(crate) const TEST_CONFIG: &str = r#"
[verification]
account_id = "acct"
clock_skew = "60s"
[[secrets]]
id = "live"
value = "live-secret"
[[secrets]]
id = "retired"
value = "retired-secret"
not_after = "2020-01-01T00:00:00Z"
[[pages]]
path = "/"
access = "public"
[[pages]]
path = "/docs/**"
access = "verified"
[[pages]]
path = "/staff/**"
access = "verified"
allow_domains = ["example.com"]
[[pages]]
path = "/beta/**"
access = "verified"
allow_groups = ["beta"]
require = { plan = ["pro"] }
[[pages]]
path = "/docs/**"
methods = ["POST"]
access = "verified"
allow_groups = ["editors"]
"#;

/// The token API's paths (the second is an alias kept for backends written
/// against Released's impersonation endpoint).
pub(crate) const TOKEN_API_PATHS: [&str; 2] = ["/auth/api/token", "/auth/api/impersonation/token"];

/// The revoke API's path.
pub(crate) const REVOKE_API_PATH: &str = "/auth/api/revoke";

/// One of the gate's own endpoints: answered by the gate itself, never
/// forwarded, whatever the rules say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// The token API ([`TOKEN_API_PATHS`]).
    TokenApi,
    /// The revoke API ([`REVOKE_API_PATH`]).
    RevokeApi,
    /// The `released-page` element's script (`embed.script_path`).
    EmbedScript,
    /// Where a browser ends its session (`embed.logout_path`).
    Logout,
    /// Who the user is, as JSON (`embed.me_path`).
    Me,
    /// The script that sizes the element from inside its frame
    /// (`embed.frame_script_path`).
    FrameScript,
}

impl Endpoint {
    /// What it is, for `explain` and `check`.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Endpoint::TokenApi => "the token API",
            Endpoint::RevokeApi => "the revoke API",
            Endpoint::EmbedScript => "the released-page script",
            Endpoint::Logout => "the logout endpoint",
            Endpoint::Me => "the user-info endpoint",
            Endpoint::FrameScript => "the frame script",
        }
    }
}

/// Where requests that pass the gate go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamTarget {
    /// Serve files from a directory (the embedded demo, small sites).
    Dir(PathBuf),
    /// Forward to a portal host over HTTP or HTTPS.
    Url(http::Uri),
    /// No `[upstream]`: the gate guards an application in-process
    /// ([`crate::GateLayer`]); the proxy refuses to start without one.
    None,
}

/// The upstream and how long the gate waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamConfig {
    /// Where requests go.
    pub target: UpstreamTarget,
    /// Extra CA certificates trusted for an `https://` upstream
    /// (`upstream.ca_file`), besides the compiled-in public roots.
    pub ca_certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// How long to wait for a TCP connection to the upstream.
    pub connect_timeout: Duration,
    /// How long to wait for the upstream's response head.
    pub timeout: Duration,
    /// Idle pooled connections are closed after this long; keep it below the
    /// upstream's own keep-alive timeout so the pool never hands out a
    /// connection the upstream is closing.
    pub pool_idle_timeout: Duration,
}

/// How tokens are minted and checked.
#[derive(Debug, Clone)]
pub(crate) struct Verification {
    /// The only account this gate serves; tokens of other accounts are refused.
    pub account_id: String,
    /// Lifetime of minted tokens.
    pub token_ttl: Duration,
    /// Allowance for clocks that disagree between minting and checking.
    pub clock_skew: Duration,
    /// Entries of the decrypt cache; 0 disables it.
    pub cache_capacity: usize,
    /// Lifetime of the session a token is exchanged for.
    pub session_ttl: Duration,
}

/// The gate's own TLS certificate (`[tls]`).
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    /// The certificate chain and key files, loaded and checked to match.
    pub certified: std::sync::Arc<rustls::sign::CertifiedKey>,
}

/// What `portal-gate check` needs to know about a secret besides its key:
/// never the value.
#[derive(Debug, Clone)]
pub(crate) struct SecretNote {
    /// The secret's id.
    pub id: String,
    /// Its length in bytes.
    pub len: usize,
    /// Written inline (`value =`) in the config file.
    pub inline: bool,
    /// When it stops minting and verifying.
    pub not_after: Option<std::time::SystemTime>,
}

/// The embed: the `released-page` script, the frame script, and who may
/// frame the portal.
#[derive(Debug, Clone)]
pub(crate) struct Embed {
    /// Where the gate serves the element's script.
    pub script_path: String,
    /// Where the gate serves the frame script.
    pub frame_script_path: String,
    /// The frame script, its allowed parent origins baked in: built with
    /// the config, so a reload that changes the origins changes its bytes
    /// and its ETag.
    pub frame_script: crate::http::embed::EmbedScript,
    /// Insert the frame script's tag into HTML answers to frame requests.
    pub inject_frame_script: bool,
    /// Where a browser ends its session.
    pub logout_path: String,
    /// Where the page asks who the user is.
    pub me_path: String,
    /// The origins that may frame the portal and read `me_path` with
    /// credentials (CORS); empty means any may frame, none may read.
    pub allowed_origins: Vec<String>,
    /// The `Content-Security-Policy` value built from `allowed_origins`
    /// (who may frame the portal); `None` leaves framing unrestricted.
    pub frame_ancestors: Option<http::HeaderValue>,
}

/// The attributes forwarded to the upstream as
/// `X-Forwarded-Attr-<Key>` (`[forward] attributes`): the key, and its
/// header's name (`support_tier` → `x-forwarded-attr-support-tier`).
pub(crate) type ForwardedAttributes = Vec<(String, http::HeaderName)>;

/// What the gate does with verified pages while its revocation store is
/// out of reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FailMode {
    /// Keep serving on the last set it had (the default).
    #[default]
    Open,
    /// Refuse verified pages (503) once the set is older than
    /// `max_staleness`; public pages are always served.
    Closed,
}

/// `[revocation]`: the shared store revocations live in.
#[derive(Debug, Clone)]
pub(crate) struct StoreConfig {
    /// Where it is, with the password from `password_env`/`password_file`.
    pub info: redis::ConnectionInfo,
    /// `host:port/db` for logs and messages: never the password.
    pub shown: String,
    /// What verified pages do while it is out of reach.
    pub fail_mode: FailMode,
    /// How old the set may get before `fail_mode = "closed"` refuses.
    pub max_staleness: Duration,
    /// A private CA (PEM) to trust for `rediss://`, besides Mozilla's
    /// roots (`ca_file`).
    pub ca_pem: Option<Vec<u8>>,
}

impl StoreConfig {
    /// Whether verified pages wait while the set is stale.
    pub(crate) fn fails_closed(&self) -> bool {
        self.fail_mode == FailMode::Closed
    }
}

/// The token API's settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Api {
    /// Networks the token API takes calls from (the client address as
    /// `trusted_proxies` reveal it); empty means any.
    pub allowed_sources: Vec<ipnet::IpNet>,
}

impl Api {
    /// Whether the token API takes calls from `ip`.
    pub(crate) fn allows_source(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.allowed_sources.is_empty() || self.allowed_sources.iter().any(|net| net.contains(&ip))
    }
}

/// Bounds on what one client may make the gate hold or wait for. Every
/// one has a safe default; see `docs/security.md`.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Time a client has to send a request head; for HTTP/1 it also bounds
    /// how long an idle keep-alive connection waits for its next request.
    pub header_read_timeout: Duration,
    /// A connection that moves no byte for this long is closed gracefully
    /// (HTTP/1 keep-alive and HTTP/2 alike).
    pub idle_timeout: Duration,
    /// Bytes of one request head (HTTP/1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Headers in one HTTP/1 request.
    pub max_headers: usize,
    /// Bytes of a token API request body.
    pub api_max_body: usize,
    /// Open client connections; beyond it new connections wait in the
    /// listen backlog.
    pub max_connections: usize,
    /// Concurrent streams on one HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
    /// Length of a token; longer ones are refused before any decoding.
    pub max_token_len: usize,
    /// Length of a query string.
    pub max_query_len: usize,
    /// Failed token API attempts one client address may make in a burst.
    pub api_failure_burst: u32,
    /// One failed attempt is forgiven every this long.
    pub api_failure_refill: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Time a client has to send the start of a request body (up to
    /// [`crate::upstream::upload::BUFFERED_BODY`] bytes, or the token API's whole
    /// body), and the longest pause within the rest of a longer body.
    pub body_timeout: Duration,
    /// Requests one client connection may have with the upstream at once
    /// (more wait, within `upstream.timeout`): an HTTP/2 connection's
    /// streams must not take the upstream slots every client shares.
    pub max_inflight_per_connection: usize,
    /// WebSocket tunnels open at once; beyond it a handshake gets 503.
    pub max_tunnels: usize,
    /// A tunnel that moves no byte either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// The longest pause between two parts of a `text/event-stream`
    /// answer, in place of the per-answer idle clock.
    pub stream_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            api_max_body: 64 * 1024,
            max_connections: 10_000,
            h2_max_concurrent_streams: 100,
            max_token_len: crate::token::format::MAX_TOKEN_LEN,
            max_query_len: 8 * 1024,
            api_failure_burst: 10,
            api_failure_refill: Duration::from_secs(6),
            shutdown_grace: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            max_inflight_per_connection: 16,
            max_tunnels: 1024,
            tunnel_idle_timeout: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(600),
        }
    }
}

/// The validated configuration the gate runs on.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from (for messages).
    pub(crate) source: PathBuf,
    /// The address to listen on.
    pub(crate) listen: SocketAddr,
    /// What happens to paths no rule matches.
    pub(crate) default_access: DefaultAccess,
    /// Paths compare ASCII-case-insensitively in rules.
    pub(crate) case_insensitive_paths: bool,
    /// Where accepted requests go.
    pub(crate) upstream: UpstreamConfig,
    /// Token settings.
    pub(crate) verification: Verification,
    /// The configured secrets.
    pub(crate) secrets: SecretRing,
    /// The compiled page rules.
    pub(crate) rules: RuleSet,
    /// Peers whose `X-Forwarded-*` headers are extended rather than replaced.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Hosts the gate answers for; empty means any. Others get 421.
    pub(crate) public_hosts: Vec<String>,
    /// Resource limits.
    pub(crate) limits: Limits,
    /// Who may call the token API.
    pub(crate) api: Api,
    /// Attributes the upstream receives in headers.
    pub(crate) forward: ForwardedAttributes,
    /// Credentials refused before their expiry.
    pub(crate) revocations: crate::access::revocation::Revocations,
    /// The `[[revocations]]` entries: for `check`'s warnings, and for the
    /// shared store, which every replica then hears them from.
    pub(crate) revocation_entries: Vec<(crate::access::revocation::Subject, u64)>,
    /// The shared revocation store, if any.
    pub(crate) store: Option<StoreConfig>,
    /// The embed's paths and framing policy.
    pub(crate) embed: Embed,
    /// TLS for the gate's own listener; plain HTTP when absent.
    pub(crate) tls: Option<TlsSettings>,
    /// The admin listener (health, readiness, metrics); off when absent.
    pub(crate) admin: Option<SocketAddr>,
    /// Log users' emails in access logs instead of a keyed pseudonym.
    pub(crate) log_user_email: bool,
    /// Facts about each secret for `check`'s warnings.
    pub(crate) secret_notes: Vec<SecretNote>,
    /// A short hash of the config text, to tell versions apart in logs and
    /// metrics.
    pub(crate) version: String,
    /// Files whose change `--watch` turns into a reload: the config itself,
    /// `file =` secrets, the TLS certificate and key, the upstream CA file.
    pub(crate) watched: Vec<WatchedFile>,
}

/// A file the config was read from, as it was just before it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchedFile {
    /// Where the file is (joined to the config's directory).
    pub path: PathBuf,
    /// Its fingerprint taken just before reading it, so that `--watch`
    /// sees any later change, even one made before the watch began.
    pub as_read: Fingerprint,
}

impl WatchedFile {
    /// Fingerprint `path`; call it before reading the file.
    pub(crate) fn before_reading(path: PathBuf) -> WatchedFile {
        let as_read = fingerprint(&path);
        WatchedFile { path, as_read }
    }
}

/// What identifies one version of a file (length, modification time,
/// inode); `None` when it cannot be read.
pub(crate) type Fingerprint = Option<(u64, Option<SystemTime>, u64)>;

/// The fingerprint of the file at `path` now.
pub(crate) fn fingerprint(path: &Path) -> Fingerprint {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.len(), meta.modified().ok(), inode))
}

impl Config {
    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The admin listener's address (`[admin] listen`), if configured.
    pub fn admin(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Whether the gate speaks TLS on its listener (`[tls]`).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A short hash of the config text, to tell versions apart in logs
    /// and metrics.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The configured secrets; the primary one mints.
    pub fn secrets(&self) -> &SecretRing {
        &self.secrets
    }

    /// The portal account whose tokens the gate accepts.
    pub fn account_id(&self) -> &str {
        &self.verification.account_id
    }

    /// The longest token the gate opens (`limits.max_token_len`).
    pub fn max_token_len(&self) -> usize {
        self.limits.max_token_len
    }

    /// The lifetime of minted tokens.
    pub fn token_ttl(&self) -> Duration {
        self.verification.token_ttl
    }

    /// The gate's own endpoint at the normalized `path`, if there is one:
    /// the one list of them, for the request path, `explain` and `check`.
    pub(crate) fn endpoint_at(&self, path: &str) -> Option<Endpoint> {
        self.endpoints()
            .find(|(at, _)| *at == path)
            .map(|(_, endpoint)| endpoint)
    }

    /// Every path the gate answers itself, with what it is.
    pub(crate) fn endpoints(&self) -> impl Iterator<Item = (&str, Endpoint)> {
        TOKEN_API_PATHS
            .iter()
            .map(|path| (*path, Endpoint::TokenApi))
            .chain([
                (REVOKE_API_PATH, Endpoint::RevokeApi),
                (self.embed.script_path.as_str(), Endpoint::EmbedScript),
                (self.embed.logout_path.as_str(), Endpoint::Logout),
                (self.embed.me_path.as_str(), Endpoint::Me),
                (self.embed.frame_script_path.as_str(), Endpoint::FrameScript),
            ])
    }

    /// Whether `ip` is one of the `trusted_proxies`.
    pub(crate) fn trusts_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Read and validate the config file at `path`. Relative paths inside it
    /// (`upstream.dir`, secret `file`) are taken relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let io_error = |message: String| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message,
        };
        let as_read = fingerprint(path);
        let meta = std::fs::metadata(path).map_err(|e| io_error(format!("cannot read: {e}")))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(io_error(format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| io_error(format!("cannot read: {e}")))?;
        let mut config = Config::parse(&text, path)?;
        // The config file (always the first watched) as it was before
        // `text` was read, not as `parse` found it a moment later.
        if let Some(file) = config.watched.first_mut() {
            file.as_read = as_read;
        }
        Ok(config)
    }

    /// The files the config file at `path` names (itself, `file =` secrets,
    /// TLS and CA files), read whether or not the config is valid: what to
    /// watch for the change that may mend a refused config.
    pub(crate) fn named_files(path: &Path) -> Vec<PathBuf> {
        let text = std::fs::metadata(path)
            .ok()
            .filter(|meta| meta.len() <= MAX_CONFIG_BYTES)
            .and_then(|_| std::fs::read_to_string(path).ok())
            .unwrap_or_default();
        compile::named_files(&text, path)
    }

    /// Validate config `text` as if read from `path`. The files it reads
    /// (secrets, TLS, CA) are fingerprinted as they are read, and `path`
    /// when this is called: a caller that read `text` from `path` itself
    /// and wants `--watch` to see every later edit should use
    /// [`Config::load`], which fingerprints the file before reading it.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        compile::parse(text, path)
    }

    /// An error unless the config has an `[upstream]`: the proxy needs
    /// somewhere to forward to (a config for [`crate::GateLayer`] alone
    /// need not have one).
    pub fn require_upstream(&self) -> Result<(), ConfigError> {
        match self.upstream.target {
            UpstreamTarget::None => Err(ConfigError {
                file: self.source.clone(),
                line: None,
                key: Some("upstream".to_string()),
                message: "the proxy needs an [upstream] with `dir` or `url`".to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Lines describing the config for `portal-gate check`: the upstream,
    /// the rules in precedence order, the secrets by id only.
    pub fn summary(&self) -> String {
        use fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "config:   {}", self.source.display());
        let _ = writeln!(out, "listen:   {}", self.listen);
        match &self.upstream.target {
            UpstreamTarget::Dir(dir) => {
                let _ = writeln!(out, "upstream: directory {}", dir.display());
            }
            UpstreamTarget::Url(url) => {
                let _ = writeln!(out, "upstream: {url}");
            }
            UpstreamTarget::None => {
                let _ = writeln!(
                    out,
                    "upstream: none (for GateLayer only; `serve` needs one)"
                );
            }
        }
        let _ = writeln!(out, "account:  {}", self.verification.account_id);
        let primary = self.secrets.primary().id();
        let ids: Vec<String> = self
            .secrets
            .ids()
            .map(|id| {
                if id == primary {
                    format!("{id} (primary)")
                } else {
                    id.to_string()
                }
            })
            .collect();
        let _ = writeln!(out, "secrets:  {}", ids.join(", "));
        let default = match self.default_access.access() {
            Access::Verified => "verified users only",
            Access::Public => "public",
        };
        let _ = writeln!(out, "rules ({}, most specific first):", self.rules.len());
        for rule in self.rules.in_precedence_order() {
            let _ = writeln!(out, "  {}", rule.describe());
        }
        let _ = writeln!(out, "  (any other path: {default})");
        out
    }
}
