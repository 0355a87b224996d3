//! What serde reads from the TOML file: every table and key, unknown keys
//! refused, values kept with their spans so errors can name the line.

use serde::Deserialize;
use toml::Spanned;

use super::DefaultAccess;
use crate::access::rules::Access;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) default_access: Option<DefaultAccess>,
    #[serde(default)]
    pub(super) case_insensitive_paths: bool,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<Spanned<String>>,
    #[serde(default, alias = "public_host")]
    pub(super) public_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) embed: RawEmbed,
    #[serde(default)]
    pub(super) api: RawApi,
    #[serde(default)]
    pub(super) forward: RawForward,
    pub(super) tls: Option<Spanned<RawTls>>,
    pub(super) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(super) log_user_email: bool,
    pub(super) upstream: Option<Spanned<RawUpstream>>,
    pub(super) verification: Spanned<RawVerification>,
    #[serde(default)]
    pub(super) secrets: Vec<Spanned<RawSecret>>,
    #[serde(default)]
    pub(super) pages: Vec<Spanned<RawPage>>,
    #[serde(default)]
    pub(super) revocations: Vec<Spanned<RawRevocation>>,
    pub(super) revocation: Option<Spanned<RawStore>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) url: Spanned<String>,
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) fail_mode: Option<crate::config::FailMode>,
    pub(super) max_staleness: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocation {
    pub(super) email: Option<Spanned<String>>,
    pub(super) user_id: Option<Spanned<String>>,
    pub(super) before: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: Spanned<String>,
    pub(super) key: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForward {
    #[serde(default)]
    pub(super) attributes: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmbed {
    pub(super) script_path: Option<Spanned<String>>,
    pub(super) logout_path: Option<Spanned<String>>,
    pub(super) me_path: Option<Spanned<String>>,
    pub(super) frame_script_path: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) inject_frame_script: bool,
    #[serde(default)]
    pub(super) allowed_origins: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    #[serde(default)]
    pub(super) allowed_sources: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) header_read_timeout: Option<Spanned<String>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) max_header_bytes: Option<Spanned<usize>>,
    pub(super) max_headers: Option<Spanned<usize>>,
    pub(super) api_max_body: Option<Spanned<usize>>,
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) h2_max_concurrent_streams: Option<Spanned<u32>>,
    pub(super) max_token_len: Option<Spanned<usize>>,
    pub(super) max_query_len: Option<Spanned<usize>>,
    pub(super) api_failure_burst: Option<Spanned<u32>>,
    pub(super) api_failure_refill: Option<Spanned<String>>,
    pub(super) shutdown_grace: Option<Spanned<String>>,
    pub(super) max_tunnels: Option<Spanned<usize>>,
    pub(super) tunnel_idle_timeout: Option<Spanned<String>>,
    pub(super) stream_idle_timeout: Option<Spanned<String>>,
    pub(super) body_timeout: Option<Spanned<String>>,
    pub(super) max_inflight_per_connection: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) dir: Option<Spanned<String>>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) pool_idle_timeout: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerification {
    pub(super) account_id: Spanned<String>,
    pub(super) token_ttl: Option<Spanned<String>>,
    pub(super) session_ttl: Option<Spanned<String>>,
    pub(super) clock_skew: Option<Spanned<String>>,
    pub(super) cache_capacity: Option<Spanned<usize>>,
    pub(super) sessions_not_before: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecret {
    pub(super) id: Spanned<String>,
    pub(super) value: Option<Spanned<String>>,
    pub(super) env: Option<Spanned<String>>,
    pub(super) file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) primary: bool,
    pub(super) not_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPage {
    pub(super) path: Spanned<String>,
    pub(super) access: Access,
    #[serde(default)]
    pub(super) allow_emails: Vec<String>,
    #[serde(default)]
    pub(super) allow_domains: Vec<String>,
    #[serde(default)]
    pub(super) allow_groups: Vec<String>,
    #[serde(default)]
    pub(super) require: std::collections::BTreeMap<String, OneOrMany>,
    pub(super) methods: Option<Spanned<Vec<String>>>,
    pub(super) websocket: Option<bool>,
    pub(super) stream_idle_timeout: Option<Spanned<String>>,
}

/// A `require` value: `"pro"` or `["pro", "enterprise"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}
