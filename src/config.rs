//! The configuration: read once from TOML, validated whole, then immutable.
//!
//! Two stages, as the rest of the crate expects: [`RawConfig`] is what serde
//! reads (unknown keys are errors, no I/O), and [`Config`] is the validated,
//! compiled form (a [`SecretRing`], a [`RuleSet`], parsed durations and
//! addresses). Every error names the file, the line and the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::keys::{SecretRing, SecretSpec};
use crate::rules::{Access, RuleOptions, RuleSet, RuleSpec};

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
pub enum DefaultAccess {
    /// Only verified users (the default: fail closed).
    Restricted,
    /// Anyone.
    Public,
}

/// Where requests that pass the gate go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// Serve files from a directory (the embedded demo, small sites).
    Dir(PathBuf),
    /// Forward to a portal host over HTTP or HTTPS.
    Url(http::Uri),
}

/// The upstream and how long the gate waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
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
pub struct Verification {
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
pub struct TlsSettings {
    /// The certificate chain file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
    /// Both, loaded and checked to match.
    pub certified: std::sync::Arc<rustls::sign::CertifiedKey>,
}

/// What `portal-gate check` needs to know about a secret besides its key:
/// never the value.
#[derive(Debug, Clone)]
pub struct SecretNote {
    /// The secret's id.
    pub id: String,
    /// Its length in bytes.
    pub len: usize,
    /// Written inline (`value =`) in the config file.
    pub inline: bool,
    /// When it stops minting and verifying.
    pub not_after: Option<std::time::SystemTime>,
}

/// The embed: the `released-page` script and who may frame the portal.
#[derive(Debug, Clone)]
pub struct Embed {
    /// Where the gate serves the element's script.
    pub script_path: String,
    /// Where a browser ends its session.
    pub logout_path: String,
    /// Origins that may frame the portal (`frame-ancestors`); empty leaves
    /// framing unrestricted.
    pub allowed_origins: Vec<String>,
    /// The `Content-Security-Policy` value built from `allowed_origins`.
    pub frame_ancestors: Option<http::HeaderValue>,
}

/// Bounds on what one client may make the gate hold or wait for. Every
/// one has a safe default; see `docs/security.md`.
#[derive(Debug, Clone)]
pub struct Limits {
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
            max_token_len: crate::token::MAX_TOKEN_LEN,
            max_query_len: 8 * 1024,
            api_failure_burst: 10,
            api_failure_refill: Duration::from_secs(6),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The validated configuration the gate runs on.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from (for messages).
    pub source: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// What happens to paths no rule matches.
    pub default_access: DefaultAccess,
    /// Paths compare ASCII-case-insensitively in rules.
    pub case_insensitive_paths: bool,
    /// Where accepted requests go.
    pub upstream: UpstreamConfig,
    /// Token settings.
    pub verification: Verification,
    /// The configured secrets.
    pub secrets: SecretRing,
    /// The compiled page rules.
    pub rules: RuleSet,
    /// Peers whose `X-Forwarded-*` headers are extended rather than replaced.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Hosts the gate answers for; empty means any. Others get 421.
    pub public_hosts: Vec<String>,
    /// Resource limits.
    pub limits: Limits,
    /// The embed's paths and framing policy.
    pub embed: Embed,
    /// TLS for the gate's own listener; plain HTTP when absent.
    pub tls: Option<TlsSettings>,
    /// The admin listener (health, readiness, metrics); off when absent.
    pub admin: Option<SocketAddr>,
    /// Log users' emails in access logs instead of a keyed pseudonym.
    pub log_user_email: bool,
    /// Facts about each secret for `check`'s warnings.
    pub secret_notes: Vec<SecretNote>,
    /// A short hash of the config text, to tell versions apart in logs and
    /// metrics.
    pub version: String,
    /// Files whose change `--watch` turns into a reload: the config itself,
    /// `file =` secrets, the TLS certificate and key, the upstream CA file.
    pub watched: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    default_access: Option<DefaultAccess>,
    #[serde(default)]
    case_insensitive_paths: bool,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    #[serde(default, alias = "public_host")]
    public_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    embed: RawEmbed,
    tls: Option<Spanned<RawTls>>,
    admin: Option<RawAdmin>,
    #[serde(default)]
    log_user_email: bool,
    upstream: Spanned<RawUpstream>,
    verification: Spanned<RawVerification>,
    #[serde(default)]
    secrets: Vec<Spanned<RawSecret>>,
    #[serde(default)]
    pages: Vec<Spanned<RawPage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmbed {
    script_path: Option<Spanned<String>>,
    logout_path: Option<Spanned<String>>,
    #[serde(default)]
    allowed_origins: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    header_read_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_header_bytes: Option<Spanned<usize>>,
    max_headers: Option<Spanned<usize>>,
    api_max_body: Option<Spanned<usize>>,
    max_connections: Option<Spanned<usize>>,
    h2_max_concurrent_streams: Option<Spanned<u32>>,
    max_token_len: Option<Spanned<usize>>,
    max_query_len: Option<Spanned<usize>>,
    api_failure_burst: Option<Spanned<u32>>,
    api_failure_refill: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    dir: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    pool_idle_timeout: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerification {
    account_id: Spanned<String>,
    token_ttl: Option<Spanned<String>>,
    session_ttl: Option<Spanned<String>>,
    clock_skew: Option<Spanned<String>>,
    cache_capacity: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    id: Spanned<String>,
    value: Option<Spanned<String>>,
    env: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    #[serde(default)]
    primary: bool,
    not_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPage {
    path: Spanned<String>,
    access: Access,
    #[serde(default)]
    allow_emails: Vec<String>,
    #[serde(default)]
    allow_domains: Vec<String>,
}

/// Turns byte offsets into line numbers and builds located errors.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The key assigned on 1-based `line`, as written (`key = value`).
    /// serde errors carry only a span, so this is how they name the key.
    fn key_on_line(&self, line: usize) -> Option<String> {
        let text = self.text.lines().nth(line.checked_sub(1)?)?;
        let (key, _) = text.split_once('=')?;
        let key = key.trim().trim_matches('"');
        (!key.is_empty() && !key.starts_with('[') && !key.starts_with('#')).then(|| key.to_string())
    }

    fn error(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(span.start)),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    fn duration(
        &self,
        value: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v.get_ref()).map_err(|e| {
                self.error(
                    v.span(),
                    key,
                    format!(
                        "invalid duration {:?}: {e} (write e.g. \"30s\", \"5m\", \"2h\")",
                        v.get_ref()
                    ),
                )
            }),
        }
    }
}

impl Config {
    /// Read and validate the config file at `path`. Relative paths inside it
    /// (`upstream.dir`, secret `file`) are taken relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let io_error = |message: String| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| io_error(format!("cannot read: {e}")))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(io_error(format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| io_error(format!("cannot read: {e}")))?;
        Config::parse(&text, path)
    }

    /// Validate config `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let at = Locator { file: path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| at.line_of(s.start));
            ConfigError {
                file: path.to_path_buf(),
                line,
                key: line.and_then(|l| at.key_on_line(l)),
                message: e.message().trim_end().to_string(),
            }
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();

        let listen = match &raw.listen {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v.get_ref().parse().map_err(|_| {
                at.error(
                    v.span(),
                    "listen",
                    format!(
                        "{:?} is not an address like \"127.0.0.1:8080\"",
                        v.get_ref()
                    ),
                )
            })?,
        };

        let upstream = compile_upstream(&at, &raw.upstream, &base)?;
        let verification = compile_verification(&at, raw.verification.get_ref())?;
        let mut watched = vec![path.to_path_buf()];
        let (secrets, secret_notes) = compile_secrets(&at, &raw.secrets, &base, &mut watched)?;
        let rules = compile_pages(&at, &raw.pages, raw.case_insensitive_paths)?;
        let limits = compile_limits(&at, &raw.limits)?;
        let embed = compile_embed(&at, &raw.embed)?;
        let tls = compile_tls(&at, raw.tls.as_ref(), &base, &mut watched)?;
        let admin = match &raw.admin {
            None => None,
            Some(admin) => {
                let addr: SocketAddr = admin.listen.get_ref().parse().map_err(|_| {
                    at.error(
                        admin.listen.span(),
                        "admin.listen",
                        format!(
                            "{:?} is not an address like \"127.0.0.1:9090\"",
                            admin.listen.get_ref()
                        ),
                    )
                })?;
                if addr == listen && addr.port() != 0 {
                    return Err(at.error(admin.listen.span(), "admin.listen", "must differ from `listen`: the admin endpoints never share the public port"));
                }
                Some(addr)
            }
        };
        if let Some(ca) = &raw.upstream.get_ref().ca_file {
            watched.push(base.join(ca.get_ref()));
        }
        let trusted_proxies = raw
            .trusted_proxies
            .iter()
            .map(|entry| {
                let text = entry.get_ref().trim();
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        at.error(
                            entry.span(),
                            "trusted_proxies",
                            format!("{text:?} is not an IP address or CIDR range"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let public_hosts = raw
            .public_hosts
            .iter()
            .map(|entry| {
                let host = entry.get_ref().trim().to_ascii_lowercase();
                if host.is_empty() || host.contains(['/', ' ', '@']) {
                    return Err(at.error(
                        entry.span(),
                        "public_hosts",
                        format!("{host:?} is not a host name"),
                    ));
                }
                Ok(host)
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Config {
            source: path.to_path_buf(),
            listen,
            default_access: raw.default_access.unwrap_or(DefaultAccess::Restricted),
            case_insensitive_paths: raw.case_insensitive_paths,
            upstream,
            verification,
            secrets,
            rules,
            trusted_proxies,
            public_hosts,
            limits,
            embed,
            tls,
            admin,
            log_user_email: raw.log_user_email,
            secret_notes,
            watched,
            version: version_of(text),
        })
    }

    /// What `portal-gate check` warns about: secrets that expire within 7
    /// days (or have), secrets shorter than 32 bytes, inline secrets in a
    /// file others may read, and rules that can never match.
    pub fn warnings(&self, now: std::time::SystemTime) -> Vec<String> {
        let mut out = Vec::new();
        let week = Duration::from_secs(7 * 24 * 3600);
        for note in &self.secret_notes {
            if let Some(end) = note.not_after {
                match end.duration_since(now) {
                    Err(_) => out.push(format!(
                        "secret {:?} expired at {}: remove it",
                        note.id,
                        humantime::format_rfc3339_seconds(end)
                    )),
                    Ok(left) if left < week => out.push(format!(
                        "secret {:?} expires at {} (in {}): rotate now",
                        note.id,
                        humantime::format_rfc3339_seconds(end),
                        humantime::format_duration(Duration::from_secs(left.as_secs()))
                    )),
                    Ok(_) => {}
                }
            }
            if note.len < 32 {
                out.push(format!(
                    "secret {:?} is {} bytes long; use at least 32 (`portal-gate secret` prints one)",
                    note.id, note.len
                ));
            }
        }
        if self.secret_notes.iter().any(|n| n.inline) && readable_by_others(&self.source) {
            out.push(format!(
                "{} holds an inline secret and others may read it: chmod o-r it, or use `file =` or `env =`",
                self.source.display()
            ));
        }
        for rule in self.rules.in_precedence_order() {
            if let Some(why) = never_matches(rule.pattern(), self) {
                out.push(format!("rule {:?} can never match: {why}", rule.pattern()));
            }
        }
        out
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
        let default = match self.default_access {
            DefaultAccess::Restricted => "verified users only",
            DefaultAccess::Public => "public",
        };
        let _ = writeln!(out, "rules ({}, most specific first):", self.rules.len());
        for rule in self.rules.in_precedence_order() {
            let _ = writeln!(out, "  {}", rule.describe());
        }
        let _ = writeln!(out, "  (any other path: {default})");
        out
    }
}

fn compile_upstream(
    at: &Locator<'_>,
    raw: &Spanned<RawUpstream>,
    base: &Path,
) -> Result<UpstreamConfig, ConfigError> {
    let up = raw.get_ref();
    let target = match (&up.dir, &up.url) {
        (Some(dir), None) => {
            let full = base.join(dir.get_ref());
            if !full.is_dir() {
                return Err(at.error(
                    dir.span(),
                    "upstream.dir",
                    format!("{} is not a directory", full.display()),
                ));
            }
            UpstreamTarget::Dir(full)
        }
        (None, Some(url)) => {
            let uri: http::Uri = url
                .get_ref()
                .parse()
                .map_err(|e| at.error(url.span(), "upstream.url", format!("invalid URL: {e}")))?;
            match (uri.scheme_str(), uri.authority()) {
                (Some("http" | "https"), Some(_)) => {}
                _ => {
                    return Err(at.error(
                        url.span(),
                        "upstream.url",
                        "must be an absolute http:// or https:// URL such as \"http://127.0.0.1:3000\"",
                    ));
                }
            }
            if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
                return Err(at.error(
                    url.span(),
                    "upstream.url",
                    "must not have a path or query: the gate forwards the request's own path",
                ));
            }
            UpstreamTarget::Url(uri)
        }
        (Some(_), Some(url)) => {
            return Err(at.error(
                url.span(),
                "upstream.url",
                "set either `dir` or `url`, not both",
            ))
        }
        (None, None) => {
            return Err(at.error(
                raw.span(),
                "upstream",
                "set `dir` (a directory to serve) or `url` (a portal host)",
            ))
        }
    };
    let positive =
        |d: Duration, v: &Option<Spanned<String>>, key: &str| -> Result<Duration, ConfigError> {
            match v {
                Some(v) if d.is_zero() => Err(at.error(v.span(), key, "must be greater than zero")),
                _ => Ok(d),
            }
        };
    let connect_timeout = at.duration(
        &up.connect_timeout,
        "upstream.connect_timeout",
        Duration::from_secs(5),
    )?;
    let timeout = at.duration(&up.timeout, "upstream.timeout", Duration::from_secs(30))?;
    let pool_idle_timeout = at.duration(
        &up.pool_idle_timeout,
        "upstream.pool_idle_timeout",
        Duration::from_secs(4),
    )?;
    let ca_certs = match &up.ca_file {
        None => Vec::new(),
        Some(file) => {
            if !matches!(&target, UpstreamTarget::Url(uri) if uri.scheme_str() == Some("https")) {
                return Err(at.error(
                    file.span(),
                    "upstream.ca_file",
                    "only applies to an https:// upstream url",
                ));
            }
            let full = base.join(file.get_ref());
            crate::tls::load_ca_file(&full)
                .map_err(|e| at.error(file.span(), "upstream.ca_file", e.to_string()))?
        }
    };
    Ok(UpstreamConfig {
        target,
        ca_certs,
        connect_timeout: positive(
            connect_timeout,
            &up.connect_timeout,
            "upstream.connect_timeout",
        )?,
        timeout: positive(timeout, &up.timeout, "upstream.timeout")?,
        pool_idle_timeout: positive(
            pool_idle_timeout,
            &up.pool_idle_timeout,
            "upstream.pool_idle_timeout",
        )?,
    })
}

fn compile_embed(at: &Locator<'_>, raw: &RawEmbed) -> Result<Embed, ConfigError> {
    let gate_path = |v: &Option<Spanned<String>>,
                     key: &str,
                     default: &str|
     -> Result<String, ConfigError> {
        let Some(v) = v else {
            return Ok(default.to_string());
        };
        match crate::path::normalize(v.get_ref()) {
            Ok(normal)
                if normal == v.get_ref().as_str() && normal.len() > 1 && !normal.ends_with('/') =>
            {
                Ok(normal.into_owned())
            }
            _ => Err(at.error(
                v.span(),
                key,
                "must be a normalized absolute path such as \"/embed.js\"",
            )),
        }
    };
    let script_path = gate_path(&raw.script_path, "embed.script_path", "/embed.js")?;
    let logout_path = gate_path(&raw.logout_path, "embed.logout_path", "/auth/logout")?;
    let mut allowed_origins = Vec::with_capacity(raw.allowed_origins.len());
    for origin in &raw.allowed_origins {
        let text = origin.get_ref().trim().trim_end_matches('/');
        let parsed = url::Url::parse(text).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.has_host()
                && u.path() == "/"
                && u.query().is_none()
                && u.username().is_empty()
        });
        if parsed.is_none() {
            return Err(at.error(
                origin.span(),
                "embed.allowed_origins",
                format!("{text:?} is not an origin like \"https://app.example.com\""),
            ));
        }
        allowed_origins.push(text.to_string());
    }
    let frame_ancestors = if allowed_origins.is_empty() {
        None
    } else {
        let value = format!("frame-ancestors 'self' {}", allowed_origins.join(" "));
        let span = raw
            .allowed_origins
            .first()
            .map(|o| o.span())
            .unwrap_or(0..0);
        Some(
            http::HeaderValue::from_str(&value)
                .map_err(|_| at.error(span, "embed.allowed_origins", "origins must be ASCII"))?,
        )
    };
    Ok(Embed {
        script_path,
        logout_path,
        allowed_origins,
        frame_ancestors,
    })
}

fn compile_limits(at: &Locator<'_>, raw: &RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let within =
        |v: &Option<Spanned<usize>>, key: &str, default: usize, min: usize, max: usize| match v {
            None => Ok(default),
            Some(v) if (min..=max).contains(v.get_ref()) => Ok(*v.get_ref()),
            Some(v) => Err(at.error(v.span(), key, format!("must be between {min} and {max}"))),
        };
    let within32 = |v: &Option<Spanned<u32>>, key: &str, default: u32, min: u32, max: u32| match v {
        None => Ok(default),
        Some(v) if (min..=max).contains(v.get_ref()) => Ok(*v.get_ref()),
        Some(v) => Err(at.error(v.span(), key, format!("must be between {min} and {max}"))),
    };
    let positive = |v: &Option<Spanned<String>>,
                    key: &str,
                    default: Duration|
     -> Result<Duration, ConfigError> {
        let value = at.duration(v, key, default)?;
        match v {
            Some(v) if value.is_zero() => Err(at.error(v.span(), key, "must be greater than zero")),
            _ => Ok(value),
        }
    };
    Ok(Limits {
        header_read_timeout: positive(
            &raw.header_read_timeout,
            "limits.header_read_timeout",
            d.header_read_timeout,
        )?,
        idle_timeout: positive(&raw.idle_timeout, "limits.idle_timeout", d.idle_timeout)?,
        // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
        max_header_bytes: within(
            &raw.max_header_bytes,
            "limits.max_header_bytes",
            d.max_header_bytes,
            8192,
            1024 * 1024,
        )?,
        max_headers: within(
            &raw.max_headers,
            "limits.max_headers",
            d.max_headers,
            8,
            1000,
        )?,
        api_max_body: within(
            &raw.api_max_body,
            "limits.api_max_body",
            d.api_max_body,
            1024,
            1024 * 1024,
        )?,
        max_connections: within(
            &raw.max_connections,
            "limits.max_connections",
            d.max_connections,
            1,
            1_000_000,
        )?,
        h2_max_concurrent_streams: within32(
            &raw.h2_max_concurrent_streams,
            "limits.h2_max_concurrent_streams",
            d.h2_max_concurrent_streams,
            1,
            10_000,
        )?,
        max_token_len: within(
            &raw.max_token_len,
            "limits.max_token_len",
            d.max_token_len,
            64,
            crate::token::MAX_TOKEN_LEN,
        )?,
        max_query_len: within(
            &raw.max_query_len,
            "limits.max_query_len",
            d.max_query_len,
            256,
            64 * 1024,
        )?,
        api_failure_burst: within32(
            &raw.api_failure_burst,
            "limits.api_failure_burst",
            d.api_failure_burst,
            1,
            10_000,
        )?,
        api_failure_refill: positive(
            &raw.api_failure_refill,
            "limits.api_failure_refill",
            d.api_failure_refill,
        )?,
        shutdown_grace: at.duration(
            &raw.shutdown_grace,
            "limits.shutdown_grace",
            d.shutdown_grace,
        )?,
    })
}

fn compile_verification(
    at: &Locator<'_>,
    raw: &RawVerification,
) -> Result<Verification, ConfigError> {
    let account = raw.account_id.get_ref();
    if account.is_empty()
        || account.len() > 255
        || account.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(at.error(
            raw.account_id.span(),
            "verification.account_id",
            "must be 1 to 255 characters without spaces",
        ));
    }
    let lifetime = |v: &Option<Spanned<String>>, key: &str, default: Duration| {
        let value = at.duration(v, key, default)?;
        if value.is_zero() || value > Duration::from_secs(366 * 24 * 3600) {
            let span = v.as_ref().map(|v| v.span()).unwrap_or(0..0);
            return Err(at.error(span, key, "must be between 1s and 366 days"));
        }
        Ok(value)
    };
    // Tokens only bootstrap a session, so they live minutes; the session
    // is what lasts.
    let token_ttl = lifetime(
        &raw.token_ttl,
        "verification.token_ttl",
        Duration::from_secs(2 * 60),
    )?;
    let session_ttl = lifetime(
        &raw.session_ttl,
        "verification.session_ttl",
        Duration::from_secs(3 * 24 * 3600),
    )?;
    let clock_skew = at.duration(
        &raw.clock_skew,
        "verification.clock_skew",
        Duration::from_secs(60),
    )?;
    if clock_skew > Duration::from_secs(3600) {
        let span = raw.clock_skew.as_ref().map(|v| v.span()).unwrap_or(0..0);
        return Err(at.error(span, "verification.clock_skew", "must be at most 1h"));
    }
    let cache_capacity = match &raw.cache_capacity {
        None => 10_000,
        Some(v) if *v.get_ref() > 10_000_000 => {
            return Err(at.error(
                v.span(),
                "verification.cache_capacity",
                "must be at most 10000000 entries",
            ));
        }
        Some(v) => *v.get_ref(),
    };
    Ok(Verification {
        account_id: account.clone(),
        token_ttl,
        clock_skew,
        cache_capacity,
        session_ttl,
    })
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

/// Why a rule's pattern can never match a request, if it cannot: the gate
/// answers its own paths itself, and refuses paths that do not survive
/// normalization before any rule is looked at.
fn never_matches(pattern: &str, config: &Config) -> Option<String> {
    let own = crate::api::TOKEN_PATHS.iter().copied().chain([
        config.embed.script_path.as_str(),
        config.embed.logout_path.as_str(),
    ]);
    for path in own {
        if pattern.trim_end_matches('/') == path {
            return Some(format!("the gate answers {path} itself"));
        }
    }
    for segment in pattern
        .split('/')
        .filter(|s| !s.is_empty() && *s != "*" && *s != "**")
    {
        let alone = format!("/{segment}");
        match crate::path::normalize(&alone) {
            Err(error) => {
                return Some(format!(
                    "requests with segment {segment:?} are refused ({error})"
                ))
            }
            Ok(normal) if normal != alone => {
                return Some(format!(
                    "requests arrive normalized, as {normal:?} rather than {alone:?}"
                ));
            }
            Ok(_) => {}
        }
    }
    None
}

/// The first 12 hex digits of the SHA-256 of the config text.
fn version_of(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn compile_tls(
    at: &Locator<'_>,
    raw: Option<&Spanned<RawTls>>,
    base: &Path,
    watched: &mut Vec<PathBuf>,
) -> Result<Option<TlsSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let tls = raw.get_ref();
    let cert = base.join(tls.cert.get_ref());
    let key = base.join(tls.key.get_ref());
    let certified = crate::tls::load_certified_key(&cert, &key).map_err(|e| {
        let (span, name) = match &e {
            crate::tls::TlsError::File { path, .. } if *path == cert => {
                (tls.cert.span(), "tls.cert")
            }
            _ => (tls.key.span(), "tls.key"),
        };
        at.error(span, name, e.to_string())
    })?;
    watched.push(cert.clone());
    watched.push(key.clone());
    Ok(Some(TlsSettings {
        cert,
        key,
        certified,
    }))
}

fn compile_secrets(
    at: &Locator<'_>,
    raw: &[Spanned<RawSecret>],
    base: &Path,
    watched: &mut Vec<PathBuf>,
) -> Result<(SecretRing, Vec<SecretNote>), ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError {
            file: at.file.to_path_buf(),
            line: None,
            key: Some("secrets".into()),
            message:
                "at least one [[secrets]] entry is required (`portal-gate secret` prints a new one)"
                    .into(),
        });
    }
    let mut specs = Vec::with_capacity(raw.len());
    let mut notes = Vec::with_capacity(raw.len());
    for (i, entry) in raw.iter().enumerate() {
        let s = entry.get_ref();
        let key = |k: &str| format!("secrets[{i}].{k}");
        let value = match (&s.value, &s.env, &s.file) {
            (Some(v), None, None) => v.get_ref().as_bytes().to_vec(),
            (None, Some(var), None) => std::env::var(var.get_ref())
                .map_err(|_| {
                    at.error(
                        var.span(),
                        &key("env"),
                        format!(
                            "environment variable {} is not set or not UTF-8",
                            var.get_ref()
                        ),
                    )
                })?
                .into_bytes(),
            (None, None, Some(file)) => {
                let full = base.join(file.get_ref());
                watched.push(full.clone());
                let text = std::fs::read_to_string(&full).map_err(|e| {
                    at.error(
                        file.span(),
                        &key("file"),
                        format!("cannot read {}: {e}", full.display()),
                    )
                })?;
                // A trailing newline from `echo` or an editor is not part of the secret.
                text.trim_end_matches(['\n', '\r']).as_bytes().to_vec()
            }
            _ => {
                return Err(at.error(
                    entry.span(),
                    &key("value"),
                    "set exactly one of `value`, `env` or `file`",
                ))
            }
        };
        if value.is_empty() {
            return Err(at.error(s.id.span(), &key("value"), "the secret is empty"));
        }
        let not_after = match &s.not_after {
            None => None,
            Some(v) => Some(humantime::parse_rfc3339_weak(v.get_ref()).map_err(|e| {
                at.error(
                    v.span(),
                    &key("not_after"),
                    format!("not an RFC 3339 time: {e}"),
                )
            })?),
        };
        notes.push(SecretNote {
            id: s.id.get_ref().clone(),
            len: value.len(),
            inline: s.value.is_some(),
            not_after,
        });
        specs.push(SecretSpec {
            id: s.id.get_ref().clone(),
            value,
            primary: s.primary,
            not_after,
        });
    }
    let ring = SecretRing::new(specs).map_err(|e| {
        let span = raw.first().map(|s| s.span()).unwrap_or(0..0);
        at.error(span, "secrets", e.to_string())
    })?;
    // A primary that can no longer mint would turn every token request into
    // an error: refuse it now, while the old config still serves.
    let primary = ring.primary();
    if !primary.is_live(std::time::SystemTime::now()) {
        let index = notes.iter().position(|n| n.id == primary.id()).unwrap_or(0);
        let span = raw
            .get(index)
            .and_then(|s| s.get_ref().not_after.as_ref())
            .map(|v| v.span())
            .unwrap_or(0..0);
        return Err(at.error(
            span,
            &format!("secrets[{index}].not_after"),
            "the primary secret has expired: make a live secret primary",
        ));
    }
    Ok((ring, notes))
}

fn compile_pages(
    at: &Locator<'_>,
    raw: &[Spanned<RawPage>],
    case_insensitive: bool,
) -> Result<RuleSet, ConfigError> {
    let specs = raw
        .iter()
        .map(|p| {
            let p = p.get_ref();
            RuleSpec {
                path: p.path.get_ref().clone(),
                access: p.access,
                allow_emails: p.allow_emails.clone(),
                allow_domains: p.allow_domains.clone(),
            }
        })
        .collect();
    RuleSet::compile(specs, RuleOptions { case_insensitive }).map_err(|e| {
        let span = raw
            .get(e.index)
            .map(|p| p.get_ref().path.span())
            .unwrap_or(0..0);
        let mut message = e.to_string();
        if let Some(other) = e.other.and_then(|o| raw.get(o)) {
            message.push_str(&format!(
                " (the other rule is on line {})",
                at.line_of(other.get_ref().path.span().start)
            ));
        }
        at.error(span, &format!("pages[{}].path", e.index), message)
    })
}
