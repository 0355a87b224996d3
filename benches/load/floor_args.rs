//! The command line the floor proxies share with `portal-gate serve`, so
//! `benches/load/ab.sh` starts them like a gate build:
//! `serve --config FILE --listen ADDR`. Of the config they read only
//! `[upstream] url`, which must be `http://host:port`.

use std::net::SocketAddr;

pub struct Args {
    pub listen: SocketAddr,
    /// `host:port` of the upstream.
    pub upstream: String,
}

pub fn parse() -> Result<Args, String> {
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
