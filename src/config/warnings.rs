//! What `portal-gate check` warns about in a valid config.

use std::path::Path;
use std::time::Duration;

use super::Config;

impl Config {
    /// What `portal-gate check` warns about: secrets that expire within 7
    /// days (or have), secrets shorter than 32 bytes, inline secrets in a
    /// file others may read, rules that can never match, `require` keys no
    /// token can meet, and revocations nothing they refuse outlives.
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
        out.extend(self.stale_revocations(now));
        for rule in self.rules.in_precedence_order() {
            if let Some(why) = never_matches(rule.pattern(), self) {
                out.push(format!("rule {:?} can never match: {why}", rule.pattern()));
            }
            for key in rule.unmeetable() {
                out.push(format!(
                    "pages[{}] (path {:?}): no token can meet require.{key}: its list is \
                     empty, or every value is longer than 128 characters or has a control \
                     character; nobody will see this page",
                    rule.index(),
                    rule.pattern()
                ));
            }
        }
        out
    }

    /// `[[revocations]]` older than the longest credential lifetime: every
    /// credential they refuse has expired, so they can be deleted.
    fn stale_revocations(&self, now: std::time::SystemTime) -> Vec<String> {
        let mut out = Vec::new();
        let longest = self
            .verification
            .token_ttl
            .max(self.verification.session_ttl)
            .saturating_add(self.verification.clock_skew);
        let now_unix = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        for (index, (_, before)) in self.revocation_entries.iter().enumerate() {
            if before.saturating_add(longest.as_secs()) < now_unix {
                out.push(format!(
                    "revocations[{index}] is older than the longest credential lifetime \
                     ({}): every credential it refuses has expired; it can be deleted",
                    humantime::format_duration(longest)
                ));
            }
        }
        out
    }
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
    for (path, _) in config.endpoints() {
        if pattern.trim_end_matches('/') == path {
            return Some(format!("the gate answers {path} itself"));
        }
    }
    for segment in pattern
        .split('/')
        .filter(|s| !s.is_empty() && *s != "*" && *s != "**")
    {
        let alone = format!("/{segment}");
        match crate::access::path::normalize(&alone) {
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
