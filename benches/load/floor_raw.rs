//! A measuring stick for `benches/load/ab.sh`, not a proxy to deploy: the
//! least a reverse proxy on tokio can do per request without an HTTP
//! library, to show what hyper itself costs (compare `floor_hyper`).
//!
//! One single-threaded tokio runtime, one task per client connection that
//! owns one upstream connection: read a request head and parse it with
//! `httparse`, write the rewritten head upstream (drop `Authorization` and
//! `Connection`, add `X-Forwarded-For`), read the response head and its
//! `Content-Length` body, write both back in one call. It knows nothing
//! else of HTTP: no request bodies, no chunked responses, no limits, no
//! timeouts; anything it does not understand closes the connection.
//!
//! ```text
//! cargo build --release --example floor_raw
//! target/release/examples/floor_raw serve --config gate.toml --listen 127.0.0.1:8080
//! ```

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "floor_common.rs"]
mod floor_common;

/// Bytes for one request or response head and a small body.
const BUFFER: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    floor_common::run(|client, peer, upstream| async move {
        // Any error closes the connection; there is nothing to report it to.
        let _ = serve(client, peer, &upstream).await;
    })
}

async fn serve(mut client: TcpStream, peer: SocketAddr, upstream: &str) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut upstream = TcpStream::connect(upstream).await?;
    upstream.set_nodelay(true)?;
    let peer = peer.ip().to_string();
    let mut input = vec![0; BUFFER];
    let mut output = Vec::with_capacity(BUFFER);
    loop {
        // The request head, rewritten into `output`.
        let request = read_head(&mut client, &mut input, |bytes| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            let httparse::Status::Complete(len) = request.parse(bytes).map_err(invalid)? else {
                return Ok(None);
            };
            let (Some(method), Some(target)) = (request.method, request.path) else {
                return Err(invalid("an incomplete request line"));
            };
            output.clear();
            for part in [method.as_bytes(), b" ", target.as_bytes(), b" HTTP/1.1\r\n"] {
                output.extend_from_slice(part);
            }
            for header in request.headers.iter() {
                let name = header.name;
                if ["content-length", "transfer-encoding"]
                    .iter()
                    .any(|framing| name.eq_ignore_ascii_case(framing))
                {
                    return Err(invalid("a request body"));
                }
                if !name.eq_ignore_ascii_case("authorization")
                    && !name.eq_ignore_ascii_case("connection")
                {
                    write_header(&mut output, name.as_bytes(), header.value);
                }
            }
            write_header(&mut output, b"x-forwarded-for", peer.as_bytes());
            output.extend_from_slice(b"\r\n");
            Ok(Some(len))
        })
        .await?;
        let Some((head, filled)) = request else {
            return Ok(()); // the client closed between requests
        };
        if head != filled {
            return Err(invalid("pipelining"));
        }
        upstream.write_all(&output).await?;

        // The response head, rewritten into `output`, then its body.
        let response = read_head(&mut upstream, &mut input, |bytes| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(len) = response.parse(bytes).map_err(invalid)? else {
                return Ok(None);
            };
            let code = response.code.ok_or_else(|| invalid("no status"))?;
            output.clear();
            let status = format!("HTTP/1.1 {code} {}\r\n", response.reason.unwrap_or(""));
            output.extend_from_slice(status.as_bytes());
            let mut length = None;
            for header in response.headers.iter() {
                let name = header.name;
                if name.eq_ignore_ascii_case("content-length") {
                    let value = std::str::from_utf8(header.value).map_err(invalid)?;
                    length = Some(value.parse::<usize>().map_err(invalid)?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(invalid("a chunked response"));
                } else if name.eq_ignore_ascii_case("connection") {
                    continue;
                }
                write_header(&mut output, name.as_bytes(), header.value);
            }
            write_header(&mut output, b"cache-control", b"private, no-store");
            output.extend_from_slice(b"\r\n");
            let length = length.ok_or_else(|| invalid("no Content-Length"))?;
            Ok(Some((len, len + length)))
        })
        .await?;
        let Some(((head, end), mut filled)) = response else {
            return Err(invalid("the upstream closed"));
        };
        if end > input.len() {
            return Err(invalid("a body larger than the buffer"));
        }
        while filled < end {
            match upstream.read(&mut input[filled..end]).await? {
                0 => return Err(invalid("the upstream closed mid-body")),
                read => filled += read,
            }
        }
        if filled != end {
            return Err(invalid("bytes after the response"));
        }
        output.extend_from_slice(&input[head..end]);
        client.write_all(&output).await?;
    }
}

/// Read from `stream` into `buffer` until `parse` finds a complete head in
/// what has arrived. Returns what `parse` found and how many bytes were
/// read, or `None` if the peer closed before sending a byte.
async fn read_head<T>(
    stream: &mut TcpStream,
    buffer: &mut [u8],
    mut parse: impl FnMut(&[u8]) -> io::Result<Option<T>>,
) -> io::Result<Option<(T, usize)>> {
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            return Err(invalid("a head larger than the buffer"));
        }
        match stream.read(&mut buffer[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(invalid("closed mid-head")),
            read => filled += read,
        }
        if let Some(found) = parse(&buffer[..filled])? {
            return Ok(Some((found, filled)));
        }
    }
}

fn write_header(output: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for part in [name, b": ", value, b"\r\n"] {
        output.extend_from_slice(part);
    }
}

fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
