//! The `dir` upstream: serves the files of one directory, never anything
//! outside it. Used by the embedded demo portal and small static sites.
//!
//! [`StaticDir::serve`] expects a path already normalized by
//! [`crate::access::path::normalize`], and checks again anyway (defence in depth):
//!
//! - only `GET` and `HEAD` (otherwise 405 with `Allow: GET, HEAD`);
//! - the path must start with `/`; empty segments (`//`), `.` and `..`
//!   segments are refused with 404, so a `//host` path can never become a
//!   protocol-relative `Location` in the trailing-slash redirect;
//! - `%XX` escapes are decoded to get the file name; a decoded NUL, `/` or
//!   `\`, or a name that is not UTF-8, is 404;
//! - hidden names (a segment starting with `.`, such as `.git` or `.env`)
//!   are 404, both in the request and in the resolved path;
//! - symlinks are resolved with `canonicalize`; anything whose canonical path
//!   is not under the canonical root is 404. The root is canonicalized once
//!   at startup;
//! - only regular files are served (a FIFO or device is 404, never read).
//!
//! A directory is served as its `index.html`; a directory path without a
//! trailing slash redirects with 308 to the same path with a slash (query
//! kept), so relative links in the page resolve. A file path with a
//! trailing slash is 404. `HEAD` returns the headers with `Content-Length`
//! and an empty body. `Content-Type` comes from the extension (`mime_guess`),
//! with `; charset=utf-8` on `text/html` and `text/plain`, and
//! `X-Content-Type-Options: nosniff` is set.
//!
//! The whole file is read into memory (the upstream answers with a `Full`
//! body), so files larger than [`MAX_FILE_BYTES`] (or the limit given to
//! [`StaticDir::with_max_file_bytes`]) are refused with 500 "file too large
//! for the dir upstream": it is a configuration problem, not the client's.
//! The limit is enforced on the bytes actually read, not only on the size
//! seen before opening.
//!
//! Not handled: conditional requests, ranges, `Last-Modified`/`ETag`. The
//! directory's contents are trusted: a symlink swapped in between the
//! containment check and the open (a race only someone who can write to the
//! directory can run) is not defended against.

use std::io;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use tokio::io::AsyncReadExt;

use crate::http::respond;

/// The largest file served by default: 16 MiB.
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A static directory served as the upstream.
#[derive(Debug, Clone)]
pub(crate) struct StaticDir {
    /// Canonical path of the directory; every served file must resolve
    /// under it.
    root: PathBuf,
    /// Files are read whole into memory, so their size is capped.
    max_file_bytes: u64,
}

/// What a request path resolved to.
enum Target {
    File(PathBuf),
    /// A directory requested without the trailing slash.
    AddSlash,
}

impl StaticDir {
    /// Canonicalize the root at startup; error if it is not a directory.
    pub(crate) fn new(root: impl Into<PathBuf>) -> io::Result<StaticDir> {
        let root = std::fs::canonicalize(root.into())?;
        if !std::fs::metadata(&root)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(StaticDir {
            root,
            max_file_bytes: MAX_FILE_BYTES,
        })
    }

    #[cfg(test)]
    /// Change the largest file served (default [`MAX_FILE_BYTES`]).
    pub(crate) fn with_max_file_bytes(mut self, max: u64) -> StaticDir {
        self.max_file_bytes = max;
        self
    }

    #[cfg(test)]
    /// The canonical root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Serve a request for `path` (normalized by [`crate::access::path::normalize`]);
    /// `query` is only used to keep it in the trailing-slash redirect.
    pub(crate) async fn serve(
        &self,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let head = *method == Method::HEAD;
        if !head && *method != Method::GET {
            let mut resp = respond::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let Some(names) = decode_segments(path) else {
            return not_found();
        };
        match self.resolve(&names, path.ends_with('/')).await {
            Some(Target::File(file)) => self.send_file(&file, head).await,
            Some(Target::AddSlash) => redirect_with_slash(path, query),
            None => not_found(),
        }
    }

    /// Find the file for the decoded segments, or `None` for 404.
    async fn resolve(&self, names: &[String], trailing_slash: bool) -> Option<Target> {
        let mut candidate = self.root.clone();
        candidate.extend(names);
        let canonical = self.contained(&candidate).await?;
        let meta = tokio::fs::metadata(&canonical).await.ok()?;
        if meta.is_dir() {
            if !trailing_slash && !names.is_empty() {
                return Some(Target::AddSlash);
            }
            let index = self.contained(&canonical.join("index.html")).await?;
            let meta = tokio::fs::metadata(&index).await.ok()?;
            return meta.is_file().then_some(Target::File(index));
        }
        (meta.is_file() && !trailing_slash).then_some(Target::File(canonical))
    }

    /// Canonicalize `candidate`; `None` unless it exists, is under the root
    /// and has no hidden component below the root.
    async fn contained(&self, candidate: &Path) -> Option<PathBuf> {
        let canonical = tokio::fs::canonicalize(candidate).await.ok()?;
        let below = canonical.strip_prefix(&self.root).ok()?;
        let visible = below.components().all(|c| match c {
            Component::Normal(name) => !name.as_encoded_bytes().starts_with(b"."),
            _ => false,
        });
        visible.then_some(canonical)
    }

    async fn send_file(&self, file: &Path, head: bool) -> Response<Full<Bytes>> {
        let mut opened = match tokio::fs::File::open(file).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return not_found(),
            Err(_) => return read_failed(),
        };
        let len = match opened.metadata().await {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => return not_found(),
            Err(_) => return read_failed(),
        };
        if len > self.max_file_bytes {
            return too_large();
        }
        let body = if head {
            Bytes::new()
        } else {
            // Read at most one byte past the limit: the file may have grown
            // since the metadata was read.
            let mut buf = Vec::new();
            let limit = self.max_file_bytes.saturating_add(1);
            if (&mut opened)
                .take(limit)
                .read_to_end(&mut buf)
                .await
                .is_err()
            {
                return read_failed();
            }
            if buf.len() as u64 > self.max_file_bytes {
                return too_large();
            }
            Bytes::from(buf)
        };
        let length = if head { len } else { body.len() as u64 };
        let mut resp = Response::new(Full::new(body));
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, content_type(file));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        headers.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        resp
    }
}

/// Split a normalized path into decoded file names; `None` (404) for
/// anything a normalized path would not contain, or a hidden name.
fn decode_segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Vec::new());
    }
    rest.split('/')
        .map(|seg| {
            let name = crate::access::path::decode_segment(seg)?;
            let refused =
                name.is_empty() || name.starts_with('.') || name.contains(['\0', '/', '\\']);
            (!refused).then_some(name)
        })
        .collect()
}

fn content_type(file: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(file).first_or_octet_stream();
    let value = match mime.essence_str() {
        "text/html" => "text/html; charset=utf-8".to_owned(),
        "text/plain" => "text/plain; charset=utf-8".to_owned(),
        _ => mime.to_string(),
    };
    HeaderValue::try_from(value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

fn redirect_with_slash(path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
    let location = match query {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    // `path` never starts with `//` here (decode_segments refuses empty
    // segments), so this cannot be a redirect to another host.
    let Ok(location) = HeaderValue::try_from(location) else {
        return not_found();
    };
    let mut resp = respond::empty(StatusCode::PERMANENT_REDIRECT);
    resp.headers_mut().insert(LOCATION, location);
    resp
}

fn not_found() -> Response<Full<Bytes>> {
    respond::text(StatusCode::NOT_FOUND, "not found")
}

fn too_large() -> Response<Full<Bytes>> {
    respond::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "file too large for the dir upstream",
    )
}

fn read_failed() -> Response<Full<Bytes>> {
    respond::text(StatusCode::INTERNAL_SERVER_ERROR, "could not read file")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::fs;

    /// A site with an index, a stylesheet, a sub-directory, a hidden file
    /// and a secret next to (outside) the served directory.
    struct Site {
        _tmp: tempfile::TempDir,
        dir: StaticDir,
        outside: PathBuf,
    }

    fn site() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("site");
        fs::create_dir_all(root.join("docs")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::write(root.join("index.html"), "<h1>Home</h1>").unwrap();
        fs::write(root.join("style.css"), "body{}").unwrap();
        fs::write(root.join("docs/index.html"), "<h1>Docs</h1>").unwrap();
        fs::write(root.join("caf\u{e9} menu.txt"), "menu").unwrap();
        fs::write(root.join(".env"), "SECRET=1").unwrap();
        fs::write(root.join(".git/config"), "[core]").unwrap();
        let outside = tmp.path().join("secret.txt");
        fs::write(&outside, "secret").unwrap();
        let dir = StaticDir::new(&root).unwrap();
        Site {
            _tmp: tmp,
            dir,
            outside,
        }
    }

    async fn get(dir: &StaticDir, path: &str) -> (StatusCode, http::HeaderMap, String) {
        let resp = dir.serve(&Method::GET, path, None).await;
        into_parts(resp).await
    }

    async fn into_parts(resp: Response<Full<Bytes>>) -> (StatusCode, http::HeaderMap, String) {
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn root_is_served_as_its_index_html() {
        let s = site();
        let (status, headers, body) = get(&s.dir, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "<h1>Home</h1>");
        assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[CONTENT_LENGTH], "13");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }

    #[tokio::test]
    async fn css_has_css_content_type() {
        let s = site();
        let (status, headers, body) = get(&s.dir, "/style.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "text/css");
        assert_eq!(body, "body{}");
    }

    #[tokio::test]
    async fn escaped_names_are_decoded() {
        let s = site();
        let (status, headers, body) = get(&s.dir, "/caf%C3%A9%20menu.txt").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(body, "menu");
    }

    #[tokio::test]
    async fn missing_file_is_404() {
        let s = site();
        for path in [
            "/nope.html",
            "/docs/nope",
            "/style.css/",
            "/empty/",
            "/style.css/x",
        ] {
            assert_eq!(get(&s.dir, path).await.0, StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn escape_attempts_are_404_even_unnormalized() {
        let s = site();
        for path in [
            "/../secret.txt",
            "/docs/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/docs/%2E%2E/%2E%2E/secret.txt",
            "/..%2fsecret.txt",
            "/..%5csecret.txt",
            "/./index.html",
            "//index.html",
            "/docs//index.html",
            "/index.html%00",
            "/%zz",
            "/%+1",
            "",
            "secret.txt",
        ] {
            assert_eq!(get(&s.dir, path).await.0, StatusCode::NOT_FOUND, "{path:?}");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlink_pointing_outside_is_404() {
        let s = site();
        let root = s.dir.root();
        std::os::unix::fs::symlink(&s.outside, root.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(s.outside.parent().unwrap(), root.join("up")).unwrap();
        std::os::unix::fs::symlink(root.join(".env"), root.join("env.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("style.css"), root.join("alias.css")).unwrap();
        assert_eq!(get(&s.dir, "/leak.txt").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(&s.dir, "/up/secret.txt").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(&s.dir, "/env.txt").await.0, StatusCode::NOT_FOUND);
        // A symlink that stays inside and visible is served.
        assert_eq!(get(&s.dir, "/alias.css").await.2, "body{}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn index_html_symlinked_outside_is_404() {
        let s = site();
        let root = s.dir.root();
        fs::create_dir(root.join("trap")).unwrap();
        std::os::unix::fs::symlink(&s.outside, root.join("trap/index.html")).unwrap();
        assert_eq!(get(&s.dir, "/trap/").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn directory_without_slash_redirects_308() {
        let s = site();
        let (status, headers, _) = get(&s.dir, "/docs").await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers[LOCATION], "/docs/");
        let resp = s.dir.serve(&Method::GET, "/docs", Some("a=1&b=2")).await;
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(resp.headers()[LOCATION], "/docs/?a=1&b=2");
        let (status, _, body) = get(&s.dir, "/docs/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "<h1>Docs</h1>");
    }

    #[tokio::test]
    async fn head_has_headers_and_empty_body() {
        let s = site();
        let resp = s.dir.serve(&Method::HEAD, "/style.css", None).await;
        let (status, headers, body) = into_parts(resp).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_LENGTH], "6");
        assert_eq!(headers[CONTENT_TYPE], "text/css");
        assert_eq!(body, "");
    }

    #[tokio::test]
    async fn other_methods_are_405_with_allow() {
        let s = site();
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let resp = s.dir.serve(&method, "/", None).await;
            assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(resp.headers()[ALLOW], "GET, HEAD");
        }
    }

    #[tokio::test]
    async fn hidden_files_and_directories_are_404() {
        let s = site();
        for path in ["/.env", "/.git/config", "/.git/", "/.git", "/%2Eenv"] {
            assert_eq!(get(&s.dir, path).await.0, StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn file_over_the_limit_is_500() {
        let s = site();
        let small = s.dir.clone().with_max_file_bytes(5);
        let (status, _, body) = get(&small, "/style.css").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "file too large for the dir upstream\n");
        let resp = small.serve(&Method::HEAD, "/style.css", None).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // Exactly at the limit is fine.
        let exact = s.dir.clone().with_max_file_bytes(6);
        assert_eq!(get(&exact, "/style.css").await.2, "body{}");
    }

    #[tokio::test]
    async fn root_must_be_a_directory() {
        let s = site();
        assert!(StaticDir::new(s.dir.root().join("style.css")).is_err());
        assert!(StaticDir::new(s.dir.root().join("missing")).is_err());
    }

    #[tokio::test]
    async fn serves_the_demo_portal() {
        let portal = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/portal");
        let dir = StaticDir::new(portal).unwrap();
        for (path, heading) in [
            ("/", "<h1>Acme portal</h1>"),
            ("/changelog/", "<h1>Changelog</h1>"),
            ("/roadmap/", "<h1>Roadmap</h1>"),
            ("/internal/", "<h1>Internal notes</h1>"),
        ] {
            let (status, _, body) = get(&dir, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(body.contains(heading), "{path}");
            assert!(body.contains("href=\"/assets/portal.css\""), "{path}");
        }
        let (status, headers, _) = get(&dir, "/assets/portal.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "text/css");
        let (status, headers, _) = get(&dir, "/assets/logo.svg").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "image/svg+xml");
    }
}
