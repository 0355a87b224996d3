//! A small portal written with axum and gated in-process by
//! `portal_gate::GateLayer`: no proxy hop, the same rules, statuses and
//! header hygiene as the `portal-gate` binary, and the verified user as an
//! axum extractor.
//!
//! ```sh
//! cargo run --example axum_portal --features axum      # http://127.0.0.1:3000
//! TOKEN=$(curl -s http://127.0.0.1:3000/auth/api/token \
//!   -H 'Authorization: Bearer demo-secret-do-not-use-in-production' \
//!   -d '{"account_id": "acct_demo", "user_email": "ada@example.com"}' \
//!   | sed -E 's/.*"token":"([^"]+)".*/\1/')
//! curl -i http://127.0.0.1:3000/roadmap/                               # 401
//! curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/roadmap/
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::Html;
use axum::routing::get;
use axum::{Router, ServiceExt};
use portal_gate::{Config, Gate, GateLayer, Identity};

/// A public page: the gate forwards it without an identity, whatever the
/// request carries.
async fn home() -> Html<&'static str> {
    Html("<h1>Acme portal</h1><p>Release notes are public; the roadmap is for customers.</p>")
}

async fn changelog() -> Html<&'static str> {
    Html("<h1>Changelog</h1><p>2026-11: embeds that fit their host.</p>")
}

/// A restricted page: the gate admitted a verified user, or the handler
/// never runs.
async fn roadmap(user: Identity) -> Html<String> {
    Html(format!(
        "<h1>Roadmap</h1><p>For {} (account {}).</p>",
        user.email(),
        user.account_id()
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config_path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/axum_portal.toml").into()
    });
    let config = Config::load(Path::new(&config_path))?;
    let gate = Arc::new(Gate::new(config)?);
    let router = Router::new()
        .route("/", get(home))
        .route("/changelog/", get(changelog))
        .route("/roadmap/", get(roadmap));
    // Around the whole router, not `Router::layer`: axum routes before a
    // route's layers run, and the route must be chosen on the path the
    // gate judged (normalized), never on the client's spelling.
    let gated = tower::Layer::layer(&GateLayer::new(gate), router);
    let app = tower::ServiceExt::<Request>::map_response(gated, |response| {
        response.map(axum::body::Body::new)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("axum portal on http://{}", listener.local_addr()?);
    // With the `axum` feature the layer reads the peer from ConnectInfo.
    let service = ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app);
    axum::serve(listener, service).await?;
    Ok(())
}
