//! What the floor proxies share: the command line of `portal-gate serve`,
//! so `benches/load/ab.sh` starts them like a gate build
//! (`serve --config FILE --listen ADDR`; of the config they read only
//! `[upstream] url`, which must be `http://host:port`), and the accept
//! loop on one single-threaded runtime.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Parse the command line, then run `serve(client, peer, upstream)` as a
/// task for every connection, forever.
pub fn run<F, S>(serve: F) -> Result<(), Box<dyn std::error::Error>>
where
    F: Fn(TcpStream, SocketAddr, String) -> S,
    S: Future<Output = ()> + Send + 'static,
{
    let args = parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        loop {
            let (stream, peer) = listener.accept().await?;
            tokio::spawn(serve(stream, peer, args.upstream.clone()));
        }
    })
}

struct Args {
    listen: SocketAddr,
    /// `host:port` of the upstream.
    upstream: String,
}

fn parse() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: serve --config FILE --listen ADDR";
    if args.first().map(String::as_str) != Some("serve") {
        return Err(usage.into());
    }
    let value = |flag: &str| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|i| args.get(i + 1))
            .ok_or_else(|| format!("{flag} is missing; {usage}"))
    };
    let listen = value("--listen")?;
    let listen = listen
        .parse()
        .map_err(|error| format!("--listen {listen}: {error}"))?;
    let path = value("--config")?;
    let text = std::fs::read_to_string(path).map_err(|error| format!("{path}: {error}"))?;
    let config: toml::Table = toml::from_str(&text).map_err(|error| format!("{path}: {error}"))?;
    let url = config
        .get("upstream")
        .and_then(|upstream| upstream.get("url"))
        .and_then(toml::Value::as_str)
        .ok_or_else(|| format!("{path}: [upstream] url is missing"))?;
    let upstream = url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|authority| !authority.is_empty() && !authority.contains('/'))
        .ok_or_else(|| format!("{path}: [upstream] url must be http://host:port, not {url}"))?;
    Ok(Args {
        listen,
        upstream: upstream.to_string(),
    })
}
