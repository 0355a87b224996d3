//! The revoke API: the customer's backend takes one user's, or one
//! session's, access away on every replica.
//!
//! `POST /auth/api/revoke`, authorized like the token API (the shared
//! secret, `allowed_sources`, the failure limiter, the body limits), with
//! `{"account_id", "user_email"}`, `{"account_id", "user_id"}` or
//! `{"account_id", "session_id"}` and an optional RFC 3339 `"before"`
//! (default: now). It answers 200 once the shared store holds the
//! revocation ([`crate::ops::store::revoke`]); every replica hears it.

use bytes::Bytes;
use http::{Request, StatusCode};
use serde::Deserialize;

use crate::access::revocation::Subject;
use crate::http::api::{self, ApiError, Caller};
use crate::http::respond::{self, OwnResponse};
use crate::ops::state::Gate;
use crate::ops::store::StoreError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    account_id: Option<String>,
    user_email: Option<String>,
    user_id: Option<String>,
    session_id: Option<String>,
    before: Option<String>,
}

/// Answer one revoke API request.
pub(crate) async fn handle<B>(
    gate: &Gate,
    caller: Caller<'_>,
    request: Request<B>,
    now: u64,
) -> OwnResponse
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::upstream::body::BoxError>,
{
    match revoke(gate, caller, request, now).await {
        Ok(response) => response,
        Err(error) => error.answer(caller.metrics),
    }
}

async fn revoke<B>(
    gate: &Gate,
    caller: Caller<'_>,
    request: Request<B>,
    now: u64,
) -> Result<OwnResponse, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::upstream::body::BoxError>,
{
    let config = gate.config();
    let bytes = api::admitted_body(&config, caller, request, now).await?;
    let body: RevokeRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    let (subject, before) = read(&config, body, now)?;
    crate::ops::store::revoke(gate, &subject, before)
        .await
        .map_err(|error| match error {
            StoreError::NotConfigured => ApiError::NoStore,
            StoreError::Unreachable => ApiError::StoreUnavailable,
        })?;
    let before = std::time::UNIX_EPOCH + std::time::Duration::from_secs(before);
    let answer = serde_json::json!({
        "revoked": subject.kind(),
        "before": humantime::format_rfc3339_seconds(before).to_string(),
    });
    Ok(respond::json(StatusCode::OK, &answer))
}

/// The subject (exactly one of `user_email`, `user_id`, `session_id`) and
/// the time, checked as the token API checks identities.
fn read(
    config: &crate::config::Config,
    body: RevokeRequest,
    now: u64,
) -> Result<(Subject, u64), ApiError> {
    let bad = |why: &str| ApiError::BadRequest(why.to_owned());
    let account = body
        .account_id
        .ok_or_else(|| bad("account_id is required"))?;
    if account != config.verification.account_id {
        return Err(ApiError::WrongAccount);
    }
    use crate::token::claims::{is_plausible_email, is_valid_session_id, is_valid_user_id};
    let subject = match (body.user_email, body.user_id, body.session_id) {
        (Some(email), None, None) => {
            let email = email.trim().to_ascii_lowercase();
            match is_plausible_email(&email) {
                true => Subject::Email(email),
                false => return Err(bad("user_email is not a valid email address")),
            }
        }
        (None, Some(id), None) if is_valid_user_id(&id) => Subject::UserId(id),
        (None, Some(_), None) => return Err(bad("user_id must match ^[a-zA-Z0-9:_-]{1,255}$")),
        (None, None, Some(id)) if is_valid_session_id(&id) => Subject::SessionId(id),
        (None, None, Some(_)) => return Err(bad("session_id must match ^[A-Za-z0-9_-]{16,64}$")),
        _ => {
            return Err(bad(
                "name exactly one of user_email, user_id and session_id",
            ))
        }
    };
    // "Now" covers what was issued in this second too.
    let before = match body.before {
        None => now.saturating_add(1),
        Some(text) => humantime::parse_rfc3339_weak(&text)
            .map_err(|_| bad("before is not an RFC 3339 time"))?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
    };
    Ok((subject, before))
}
