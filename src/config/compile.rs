//! From what serde read to a validated [`Config`]: each section checked
//! and compiled, every error located by file, line and key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::*;
use super::*;
use crate::access::rules::{RuleErrorKind, RuleOptions, RuleSet, RuleSpec};
use crate::token::keys::{SecretRing, SecretSpec};

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
        let Some(v) = value else {
            return Ok(default);
        };
        let parsed = humantime::parse_duration(v.get_ref()).map_err(|e| {
            self.error(
                v.span(),
                key,
                format!(
                    "invalid duration {:?}: {e} (write e.g. \"30s\", \"5m\", \"2h\")",
                    v.get_ref()
                ),
            )
        })?;
        // Far beyond any sane setting, and far below what would overflow a
        // clock reading plus the duration.
        if parsed > MAX_DURATION {
            return Err(self.error(
                v.span(),
                key,
                format!(
                    "{:?} is longer than the most allowed, 366 days",
                    v.get_ref()
                ),
            ));
        }
        Ok(parsed)
    }
}

/// The longest duration any setting takes.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// The files config `text`, as if read from `path`, names: itself, `file =`
/// secrets, the TLS certificate and key, the upstream CA file. Best effort,
/// for watching a config that was refused, so it reads the TOML as plain
/// tables, whatever else is wrong with it; text that is not TOML names
/// only itself.
pub(super) fn named_files(text: &str, path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return files;
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let string = |value: Option<&toml::Value>, key: &str| {
        value
            .and_then(|v| v.get(key))
            .and_then(toml::Value::as_str)
            .map(|file| base.join(file))
    };
    let secrets = table.get("secrets").and_then(toml::Value::as_array);
    for secret in secrets.into_iter().flatten() {
        files.extend(string(Some(secret), "file"));
    }
    files.extend(string(table.get("tls"), "cert"));
    files.extend(string(table.get("tls"), "key"));
    files.extend(string(table.get("upstream"), "ca_file"));
    files
}

/// Validate config `text` as if read from `path`.
pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
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

    let listen = compile_listen(&at, raw.listen.as_ref())?;

    // Each file is fingerprinted as it is read (see `WatchedFile`).
    let mut watched = vec![WatchedFile::before_reading(path.to_path_buf())];
    let upstream = compile_upstream(&at, &raw.upstream, &base, &mut watched)?;
    let verification = compile_verification(&at, raw.verification.get_ref())?;
    let (secrets, secret_notes) = compile_secrets(&at, &raw.secrets, &base, &mut watched)?;
    let rules = compile_pages(&at, &raw.pages, raw.case_insensitive_paths)?;
    let limits = compile_limits(&at, &raw.limits)?;
    let embed = compile_embed(&at, &raw.embed)?;
    let tls = compile_tls(&at, raw.tls.as_ref(), &base, &mut watched)?;
    let admin = compile_admin(&at, raw.admin.as_ref(), listen)?;
    let trusted_proxies = networks(&at, &raw.trusted_proxies, "trusted_proxies")?;
    let api = Api {
        allowed_sources: networks(&at, &raw.api.allowed_sources, "api.allowed_sources")?,
    };
    let public_hosts = compile_public_hosts(&at, &raw.public_hosts)?;
    let forward = compile_forward(&at, &raw.forward.attributes)?;
    let (revocations, revocation_entries) = compile_revocations(&at, &raw)?;
    let store = compile_store(&at, raw.revocation.as_ref(), &base, &mut watched)?;

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
        api,
        forward,
        revocations,
        revocation_entries,
        store,
        embed,
        tls,
        admin,
        log_user_email: raw.log_user_email,
        secret_notes,
        watched,
        version: version_of(text),
    })
}

/// `listen`: where the gate listens (127.0.0.1:8080 when not set).
fn compile_listen(
    at: &Locator<'_>,
    raw: Option<&Spanned<String>>,
) -> Result<SocketAddr, ConfigError> {
    let Some(v) = raw else {
        return Ok(SocketAddr::from(([127, 0, 0, 1], 8080)));
    };
    v.get_ref().parse().map_err(|_| {
        let message = format!(
            "{:?} is not an address like \"127.0.0.1:8080\"",
            v.get_ref()
        );
        at.error(v.span(), "listen", message)
    })
}

/// `[admin] listen`: never the public port.
fn compile_admin(
    at: &Locator<'_>,
    raw: Option<&RawAdmin>,
    listen: SocketAddr,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(admin) = raw else {
        return Ok(None);
    };
    let addr: SocketAddr = admin.listen.get_ref().parse().map_err(|_| {
        let text = admin.listen.get_ref();
        let message = format!("{text:?} is not an address like \"127.0.0.1:9090\"");
        at.error(admin.listen.span(), "admin.listen", message)
    })?;
    if addr == listen && addr.port() != 0 {
        return Err(at.error(
            admin.listen.span(),
            "admin.listen",
            "must differ from `listen`: the admin endpoints never share the public port",
        ));
    }
    Ok(Some(addr))
}

/// `public_hosts`: host names, lower-cased.
fn compile_public_hosts(
    at: &Locator<'_>,
    entries: &[Spanned<String>],
) -> Result<Vec<String>, ConfigError> {
    entries
        .iter()
        .map(|entry| {
            let host = entry.get_ref().trim().to_ascii_lowercase();
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                let message = format!("{host:?} is not a host name");
                return Err(at.error(entry.span(), "public_hosts", message));
            }
            Ok(host)
        })
        .collect()
}

/// A list of IP addresses and CIDR ranges under `key`.
fn networks(
    at: &Locator<'_>,
    entries: &[Spanned<String>],
    key: &str,
) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    entries
        .iter()
        .map(|entry| {
            let text = entry.get_ref().trim();
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    at.error(
                        entry.span(),
                        key,
                        format!("{text:?} is not an IP address or CIDR range"),
                    )
                })
        })
        .collect()
}

fn compile_upstream(
    at: &Locator<'_>,
    raw: &Option<Spanned<RawUpstream>>,
    base: &Path,
    watched: &mut Vec<WatchedFile>,
) -> Result<UpstreamConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(UpstreamConfig {
            target: UpstreamTarget::None,
            ca_certs: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(4),
        });
    };
    let up = raw.get_ref();
    let target = upstream_target(at, raw, base)?;
    let ca_certs = match &up.ca_file {
        None => Vec::new(),
        Some(file) => {
            if !matches!(&target, UpstreamTarget::Url(uri) if uri.scheme_str() == Some("https")) {
                let message = "only applies to an https:// upstream url";
                return Err(at.error(file.span(), "upstream.ca_file", message));
            }
            let full = base.join(file.get_ref());
            watched.push(WatchedFile::before_reading(full.clone()));
            crate::server::tls::load_ca_file(&full)
                .map_err(|e| at.error(file.span(), "upstream.ca_file", e.to_string()))?
        }
    };
    let timeout = |v: &Option<Spanned<String>>, key: &str, default: u64| {
        let value = at.duration(v, key, Duration::from_secs(default))?;
        match v {
            Some(v) if value.is_zero() => Err(at.error(v.span(), key, "must be greater than zero")),
            _ => Ok(value),
        }
    };
    Ok(UpstreamConfig {
        target,
        ca_certs,
        connect_timeout: timeout(&up.connect_timeout, "upstream.connect_timeout", 5)?,
        timeout: timeout(&up.timeout, "upstream.timeout", 30)?,
        pool_idle_timeout: timeout(&up.pool_idle_timeout, "upstream.pool_idle_timeout", 4)?,
    })
}

/// `upstream.dir` or `upstream.url`, exactly one of them.
fn upstream_target(
    at: &Locator<'_>,
    raw: &Spanned<RawUpstream>,
    base: &Path,
) -> Result<UpstreamTarget, ConfigError> {
    match (&raw.get_ref().dir, &raw.get_ref().url) {
        (Some(dir), None) => {
            let full = base.join(dir.get_ref());
            if !full.is_dir() {
                let message = format!("{} is not a directory", full.display());
                return Err(at.error(dir.span(), "upstream.dir", message));
            }
            Ok(UpstreamTarget::Dir(full))
        }
        (None, Some(url)) => upstream_url(at, url).map(UpstreamTarget::Url),
        (Some(_), Some(url)) => Err(at.error(
            url.span(),
            "upstream.url",
            "set either `dir` or `url`, not both",
        )),
        (None, None) => Err(at.error(
            raw.span(),
            "upstream",
            "set `dir` (a directory to serve) or `url` (a portal host)",
        )),
    }
}

/// `upstream.url`: an absolute http(s) URL with no path or query.
fn upstream_url(at: &Locator<'_>, url: &Spanned<String>) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = url
        .get_ref()
        .parse()
        .map_err(|e| at.error(url.span(), "upstream.url", format!("invalid URL: {e}")))?;
    if !matches!(
        (uri.scheme_str(), uri.authority()),
        (Some("http" | "https"), Some(_))
    ) {
        return Err(at.error(
            url.span(),
            "upstream.url",
            "must be an absolute http:// or https:// URL such as \"http://127.0.0.1:3000\"",
        ));
    }
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return Err(at.error(
            url.span(),
            "upstream.url",
            "must not have a path or query: the gate forwards the request's own path",
        ));
    }
    Ok(uri)
}

fn compile_embed(at: &Locator<'_>, raw: &RawEmbed) -> Result<Embed, ConfigError> {
    let script_path = gate_path(at, &raw.script_path, "embed.script_path", "/embed.js")?;
    let logout_path = gate_path(at, &raw.logout_path, "embed.logout_path", "/auth/logout")?;
    let me_path = gate_path(at, &raw.me_path, "embed.me_path", "/auth/me")?;
    let frame_script_path = gate_path(
        at,
        &raw.frame_script_path,
        "embed.frame_script_path",
        "/embed-frame.js",
    )?;
    distinct_gate_paths(
        at,
        [
            (&raw.script_path, "embed.script_path", &script_path),
            (&raw.logout_path, "embed.logout_path", &logout_path),
            (&raw.me_path, "embed.me_path", &me_path),
            (
                &raw.frame_script_path,
                "embed.frame_script_path",
                &frame_script_path,
            ),
        ],
    )?;
    let origins = raw
        .allowed_origins
        .iter()
        .map(|origin| allowed_origin(at, origin))
        .collect::<Result<Vec<_>, _>>()?;
    let frame_ancestors = match origins.is_empty() {
        true => None,
        false => {
            let value = format!("frame-ancestors 'self' {}", origins.join(" "));
            let span = raw.allowed_origins[0].span();
            let value = http::HeaderValue::from_str(&value)
                .map_err(|_| at.error(span, "embed.allowed_origins", "origins must be ASCII"))?;
            Some(value)
        }
    };
    Ok(Embed {
        script_path,
        frame_script_path,
        frame_script: crate::http::embed::EmbedScript::frame(&origins),
        inject_frame_script: raw.inject_frame_script,
        logout_path,
        me_path,
        allowed_origins: origins,
        frame_ancestors,
    })
}

/// An RFC 3339 time as Unix seconds, or an error at `key`.
fn unix_time(at: &Locator<'_>, value: &Spanned<String>, key: &str) -> Result<u64, ConfigError> {
    let time = humantime::parse_rfc3339_weak(value.get_ref())
        .map_err(|e| at.error(value.span(), key, format!("not an RFC 3339 time: {e}")))?;
    Ok(time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs()))
}

/// `[[revocations]]` (each names exactly one of `email` and `user_id`, and
/// a `before` time) and `[verification] sessions_not_before`.
fn compile_revocations(
    at: &Locator<'_>,
    raw: &RawConfig,
) -> Result<
    (
        crate::access::revocation::Revocations,
        Vec<(crate::access::revocation::Subject, u64)>,
    ),
    ConfigError,
> {
    use crate::access::revocation::{Revocations, Subject};
    let mut entries = Vec::with_capacity(raw.revocations.len());
    for (index, entry) in raw.revocations.iter().enumerate() {
        let key = |name: &str| format!("revocations[{index}].{name}");
        let r = entry.get_ref();
        let subject = match (&r.email, &r.user_id) {
            (Some(email), None)
                if crate::token::claims::is_plausible_email(
                    &email.get_ref().to_ascii_lowercase(),
                ) =>
            {
                Subject::Email(email.get_ref().clone())
            }
            (Some(email), None) => {
                return Err(at.error(email.span(), &key("email"), "is not a valid email address"))
            }
            (None, Some(id)) if crate::token::claims::is_valid_user_id(id.get_ref()) => {
                Subject::UserId(id.get_ref().clone())
            }
            (None, Some(id)) => {
                return Err(at.error(
                    id.span(),
                    &key("user_id"),
                    "must match ^[a-zA-Z0-9:_-]{1,255}$",
                ))
            }
            _ => {
                let why = "name exactly one of `email` and `user_id`";
                return Err(at.error(entry.span(), &format!("revocations[{index}]"), why));
            }
        };
        entries.push((subject, unix_time(at, &r.before, &key("before"))?));
    }
    let verification = raw.verification.get_ref();
    let not_before = verification
        .sessions_not_before
        .as_ref()
        .map(|v| unix_time(at, v, "verification.sessions_not_before"))
        .transpose()?;
    Ok((Revocations::new(&entries, not_before), entries))
}

/// `[revocation]`: a `redis://` or `rediss://` URL (no password in it), a
/// password from the environment or a file, the fail mode and staleness.
fn compile_store(
    at: &Locator<'_>,
    raw: Option<&Spanned<RawStore>>,
    base: &Path,
    watched: &mut Vec<WatchedFile>,
) -> Result<Option<crate::config::StoreConfig>, ConfigError> {
    use redis::IntoConnectionInfo;
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return Ok(None);
    };
    let url = raw.url.get_ref();
    let bad_url = |why: String| at.error(raw.url.span(), "revocation.url", why);
    let parsed = url::Url::parse(url).map_err(|e| bad_url(format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") || !parsed.has_host() {
        return Err(bad_url(
            "must be redis://host:port/db or rediss://host:port/db".into(),
        ));
    }
    if parsed.password().is_some() {
        return Err(bad_url(
            "holds a password: set password_env or password_file instead".into(),
        ));
    }
    let mut info = url
        .as_str()
        .into_connection_info()
        .map_err(|e| bad_url(format!("not a store URL: {e}")))?;
    let password = store_password(at, raw, base, watched)?;
    if let Some(password) = password {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    let max_staleness = at.duration(
        &raw.max_staleness,
        "revocation.max_staleness",
        Duration::from_secs(60),
    )?;
    let ca_pem = store_ca(at, raw, parsed.scheme() == "rediss", base, watched)?;
    let shown = format!(
        "{}://{}:{}{}",
        parsed.scheme(),
        parsed.host_str().unwrap_or_default(),
        parsed.port().unwrap_or(6379),
        parsed.path()
    );
    Ok(Some(crate::config::StoreConfig {
        info,
        shown,
        fail_mode: raw.fail_mode.unwrap_or_default(),
        max_staleness,
        ca_pem,
    }))
}

/// `[revocation]`'s password: from `password_env` or `password_file`.
fn store_password(
    at: &Locator<'_>,
    raw: &RawStore,
    base: &Path,
    watched: &mut Vec<WatchedFile>,
) -> Result<Option<String>, ConfigError> {
    let password = match (&raw.password_env, &raw.password_file) {
        (None, None) => None,
        (Some(var), None) => Some(std::env::var(var.get_ref()).map_err(|_| {
            let why = format!("the environment variable {:?} is not set", var.get_ref());
            at.error(var.span(), "revocation.password_env", why)
        })?),
        (None, Some(file)) => {
            let path = base.join(file.get_ref());
            watched.push(WatchedFile::before_reading(path.clone()));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                let why = format!("cannot read {}: {e}", path.display());
                at.error(file.span(), "revocation.password_file", why)
            })?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        (Some(_), Some(file)) => {
            let why = "set one of password_env and password_file";
            return Err(at.error(file.span(), "revocation.password_file", why));
        }
    };
    Ok(password)
}

/// `[revocation] ca_file`: a private CA for a `rediss://` store.
fn store_ca(
    at: &Locator<'_>,
    raw: &RawStore,
    tls: bool,
    base: &Path,
    watched: &mut Vec<WatchedFile>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    let ca_pem = match &raw.ca_file {
        None => None,
        Some(file) if tls => {
            let path = base.join(file.get_ref());
            watched.push(WatchedFile::before_reading(path.clone()));
            let pem = std::fs::read(&path).map_err(|e| {
                let why = format!("cannot read {}: {e}", path.display());
                at.error(file.span(), "revocation.ca_file", why)
            })?;
            Some(pem)
        }
        Some(file) => {
            let why = "only a rediss:// store speaks TLS";
            return Err(at.error(file.span(), "revocation.ca_file", why));
        }
    };
    Ok(ca_pem)
}

/// `[forward] attributes`: keys an attribute may have, each once, and the
/// header each goes in.
fn compile_forward(
    at: &Locator<'_>,
    raw: &[Spanned<String>],
) -> Result<crate::config::ForwardedAttributes, ConfigError> {
    let mut out: crate::config::ForwardedAttributes = Vec::with_capacity(raw.len());
    for entry in raw {
        let key = entry.get_ref();
        if !crate::token::claims::is_valid_attribute_key(key) {
            let why = format!("{key:?} is not an attribute key (^[a-z][a-z0-9_]{{0,31}}$)");
            return Err(at.error(entry.span(), "forward.attributes", why));
        }
        if out.iter().any(|(k, _)| k == key) {
            let why = format!("{key:?} is listed twice");
            return Err(at.error(entry.span(), "forward.attributes", why));
        }
        let name = format!("x-forwarded-attr-{}", key.replace('_', "-"));
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| at.error(entry.span(), "forward.attributes", "not a header name"))?;
        out.push((key.clone(), name));
    }
    Ok(out)
}

/// The gate's own paths are one each: a path shared by two endpoints, or
/// with the token API, would leave one of them unreachable.
fn distinct_gate_paths(
    at: &Locator<'_>,
    paths: [(&Option<Spanned<String>>, &str, &String); 4],
) -> Result<(), ConfigError> {
    let [token, alias] = crate::config::TOKEN_API_PATHS;
    let token_api = [
        (&None, "the token API", token),
        (&None, "the token API", alias),
        (&None, "the revoke API", crate::config::REVOKE_API_PATH),
    ];
    for (i, &(raw, key, path)) in paths.iter().enumerate() {
        let earlier = paths[..i]
            .iter()
            .map(|&(raw, key, path)| (raw, key, path.as_str()));
        let clash = earlier
            .chain(token_api.iter().copied())
            .find(|&(_, _, other)| other == path.as_str());
        if let Some((other_raw, other_key, _)) = clash {
            // Blame the key set in the file: defaults never clash.
            let (span, key, other) = match (raw, other_raw) {
                (Some(set), _) => (set.span(), key, other_key),
                (None, Some(set)) => (set.span(), other_key, key),
                (None, None) => (0..0, key, other_key),
            };
            let why = format!("{path:?} is already the path of {other}");
            return Err(at.error(span, key, why));
        }
    }
    Ok(())
}

/// A path the gate answers itself (`embed.*_path`): normalized, absolute,
/// not a directory.
fn gate_path(
    at: &Locator<'_>,
    raw: &Option<Spanned<String>>,
    key: &str,
    default: &str,
) -> Result<String, ConfigError> {
    let Some(v) = raw else {
        return Ok(default.to_string());
    };
    match crate::access::path::normalize(v.get_ref()) {
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
}

/// An `embed.allowed_origins` entry: scheme and host (and port), nothing
/// more.
fn allowed_origin(at: &Locator<'_>, origin: &Spanned<String>) -> Result<String, ConfigError> {
    let text = origin.get_ref().trim().trim_end_matches('/');
    let parsed = url::Url::parse(text).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.has_host()
            && u.path() == "/"
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
            && u.password().is_none()
    });
    match parsed {
        // As browsers send it in `Origin`: lower-case host, no default port.
        Some(url) => Ok(url.origin().ascii_serialization()),
        None => {
            let message = format!("{text:?} is not an origin like \"https://app.example.com\"");
            Err(at.error(origin.span(), "embed.allowed_origins", message))
        }
    }
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
            crate::token::format::MAX_TOKEN_LEN,
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
        body_timeout: positive(&raw.body_timeout, "limits.body_timeout", d.body_timeout)?,
        max_inflight_per_connection: within(
            &raw.max_inflight_per_connection,
            "limits.max_inflight_per_connection",
            d.max_inflight_per_connection,
            1,
            10_000,
        )?,
        max_tunnels: within(
            &raw.max_tunnels,
            "limits.max_tunnels",
            d.max_tunnels,
            0,
            1_000_000,
        )?,
        tunnel_idle_timeout: positive(
            &raw.tunnel_idle_timeout,
            "limits.tunnel_idle_timeout",
            d.tunnel_idle_timeout,
        )?,
        stream_idle_timeout: positive(
            &raw.stream_idle_timeout,
            "limits.stream_idle_timeout",
            d.stream_idle_timeout,
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
    watched: &mut Vec<WatchedFile>,
) -> Result<Option<TlsSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let tls = raw.get_ref();
    let cert = base.join(tls.cert.get_ref());
    let key = base.join(tls.key.get_ref());
    watched.push(WatchedFile::before_reading(cert.clone()));
    watched.push(WatchedFile::before_reading(key.clone()));
    let certified = crate::server::tls::load_certified_key(&cert, &key).map_err(|e| {
        let (span, name) = match &e {
            crate::server::tls::TlsError::File { path, .. } if *path == cert => {
                (tls.cert.span(), "tls.cert")
            }
            _ => (tls.key.span(), "tls.key"),
        };
        at.error(span, name, e.to_string())
    })?;
    Ok(Some(TlsSettings { certified }))
}

fn compile_secrets(
    at: &Locator<'_>,
    raw: &[Spanned<RawSecret>],
    base: &Path,
    watched: &mut Vec<WatchedFile>,
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
        let value = secret_value(at, entry, i, base, watched)?;
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
    primary_is_live(at, raw, &ring)?;
    Ok((ring, notes))
}

/// A primary that can no longer mint would turn every token request into
/// an error: refuse it now, while the old config still serves.
fn primary_is_live(
    at: &Locator<'_>,
    raw: &[Spanned<RawSecret>],
    ring: &SecretRing,
) -> Result<(), ConfigError> {
    let primary = ring.primary();
    if primary.is_live(std::time::SystemTime::now()) {
        return Ok(());
    }
    let index = raw
        .iter()
        .position(|s| *s.get_ref().id.get_ref() == primary.id())
        .unwrap_or(0);
    let span = raw
        .get(index)
        .and_then(|s| s.get_ref().not_after.as_ref())
        .map(|v| v.span())
        .unwrap_or(0..0);
    Err(at.error(
        span,
        &format!("secrets[{index}].not_after"),
        "the primary secret has expired: make a live secret primary",
    ))
}

/// The bytes of `secrets[i]`: inline, from the environment, or from a
/// file (without its trailing newline).
fn secret_value(
    at: &Locator<'_>,
    entry: &Spanned<RawSecret>,
    i: usize,
    base: &Path,
    watched: &mut Vec<WatchedFile>,
) -> Result<Vec<u8>, ConfigError> {
    let s = entry.get_ref();
    let key = |k: &str| format!("secrets[{i}].{k}");
    match (&s.value, &s.env, &s.file) {
        (Some(v), None, None) => Ok(v.get_ref().as_bytes().to_vec()),
        (None, Some(var), None) => std::env::var(var.get_ref())
            .map(String::into_bytes)
            .map_err(|_| {
                let message = format!(
                    "environment variable {} is not set or not UTF-8",
                    var.get_ref()
                );
                at.error(var.span(), &key("env"), message)
            }),
        (None, None, Some(file)) => {
            let full = base.join(file.get_ref());
            watched.push(WatchedFile::before_reading(full.clone()));
            let text = std::fs::read_to_string(&full).map_err(|e| {
                let message = format!("cannot read {}: {e}", full.display());
                at.error(file.span(), &key("file"), message)
            })?;
            // A trailing newline from `echo` or an editor is not part of the secret.
            Ok(text.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
        }
        _ => Err(at.error(
            entry.span(),
            &key("value"),
            "set exactly one of `value`, `env` or `file`",
        )),
    }
}

fn compile_pages(
    at: &Locator<'_>,
    raw: &[Spanned<RawPage>],
    case_insensitive: bool,
) -> Result<RuleSet, ConfigError> {
    let mut specs = Vec::with_capacity(raw.len());
    for (index, p) in raw.iter().enumerate() {
        let p = p.get_ref();
        let stream_idle_timeout = match &p.stream_idle_timeout {
            None => None,
            Some(v) => {
                let key = format!("pages[{index}].stream_idle_timeout");
                let value = at.duration(&Some(v.clone()), &key, Duration::ZERO)?;
                if value.is_zero() {
                    return Err(at.error(v.span(), &key, "must be greater than zero"));
                }
                Some(value)
            }
        };
        specs.push(RuleSpec {
            path: p.path.get_ref().clone(),
            access: p.access,
            allow_emails: p.allow_emails.clone(),
            allow_domains: p.allow_domains.clone(),
            allow_groups: p.allow_groups.clone(),
            require: p
                .require
                .iter()
                .map(|(key, values)| (key.clone(), values.clone().into_vec()))
                .collect(),
            methods: p.methods.as_ref().map(|m| m.get_ref().clone()),
            websocket: p.websocket,
            stream_idle_timeout,
        });
    }
    RuleSet::compile(specs, RuleOptions { case_insensitive }).map_err(|e| page_error(at, raw, &e))
}

/// A rule's error, at the key it is about: the `methods` list's own line,
/// else the entry's `path` line; and the line of the rule it clashes with.
fn page_error(
    at: &Locator<'_>,
    raw: &[Spanned<RawPage>],
    e: &crate::access::rules::RuleError,
) -> ConfigError {
    let page = raw.get(e.index).map(Spanned::get_ref);
    let field = match e.kind {
        RuleErrorKind::BadMethod(_) | RuleErrorKind::MethodsOverlap(_) => "methods",
        RuleErrorKind::BadEmail(_) => "allow_emails",
        RuleErrorKind::BadDomain(_) => "allow_domains",
        RuleErrorKind::BadGroup(_) => "allow_groups",
        RuleErrorKind::BadRequireKey(_) => "require",
        RuleErrorKind::NarrowsPublic => "access",
        _ => "path",
    };
    // The methods list has its own line; the other keys are told by
    // the entry's path line.
    let span = match (field, page) {
        (
            "methods",
            Some(RawPage {
                methods: Some(m), ..
            }),
        ) => m.span(),
        (_, Some(p)) => p.path.span(),
        _ => 0..0,
    };
    let mut message = e.to_string();
    if let Some(other) = e.other.and_then(|o| raw.get(o)) {
        message.push_str(&format!(
            " (the other rule is on line {})",
            at.line_of(other.get_ref().path.span().start)
        ));
    }
    at.error(span, &format!("pages[{}].{field}", e.index), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_files_lists_what_a_config_would_read_even_when_it_is_invalid() {
        let path = Path::new("/etc/pg/config.toml");
        let text = r#"
            [upstream]
            url = "https://portal.internal"
            ca_file = "ca.pem"
            [verification]
            account_id = "acct"
            [[secrets]]
            id = "a"
            value = "inline"
            [[secrets]]
            id = "b"
            file = "/run/secrets/b"
            [tls]
            cert = "tls/cert.pem"
            key = "tls/key.pem"
            [[pages]]
            path = "/x/**"
            access = "no-such-access"
        "#;
        // Not a valid config (the page's access), but its files are named.
        assert!(parse(text, path).is_err());
        let names: Vec<PathBuf> = [
            "/etc/pg/config.toml",
            "/run/secrets/b",
            "/etc/pg/tls/cert.pem",
            "/etc/pg/tls/key.pem",
            "/etc/pg/ca.pem",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(named_files(text, path), names);
        assert_eq!(named_files("not [toml", path), vec![path.to_path_buf()]);
    }
}
