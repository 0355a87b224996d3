//! One reading of the request path.
//!
//! The gate's rules and the upstream must see the *same* path, or a request
//! that a rule refuses can reach the upstream under another spelling (Envoy
//! CVE-2019-9901 and CVE-2021-29492 are this bug). So the gate normalizes the
//! path once, matches rules against the result, and forwards the result:
//! the approach of Envoy's `normalize_path` + `merge_slashes` with escaped
//! slashes rejected, following RFC 3986 §6 (syntax-based normalization) and
//! §5.2.4 (`remove_dot_segments`).
//!
//! [`normalize`] takes the path part of an origin-form request target (the
//! caller splits off the query at the first `?`, and handles `*` for
//! `OPTIONS`) and, in a single pass:
//!
//! - decodes percent-encoded *unreserved* characters (`%41` → `A`,
//!   `%2e` → `.`), so `%2e%2e` is a dot segment like `..`, and the
//!   reserved characters that are legal raw in a path but `+`
//!   (`!$&'()*,=:@`: `%21` → `!`, `%40` → `@`);
//! - keeps every other escape encoded, hex in upper case (`%c3%a9` →
//!   `%C3%A9`, `%25` stays `%25`; nothing is ever decoded twice);
//! - percent-encodes raw characters that may not appear unencoded in a path
//!   (space, `"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`, `}` and raw
//!   non-ASCII UTF-8), so the output is pure ASCII;
//! - merges repeated slashes, removes `.` segments and resolves `..`
//!   segments, keeping a trailing slash (`/a/b/..` → `/a/`).
//!
//! RFC 3986 lets an application tell `/a!b` from `/a%21b`, but almost
//! every upstream decodes both to the same path. Had the gate kept them
//! apart, a rule naming `/a!b` would not see `/a%21b`, which the upstream
//! then served as `/a!b`; so the escapes of these characters are decoded,
//! and the upstream receives the one spelling the rules judged. `+` is the
//! exception: some upstreams read a raw `+` in a path as a space, so `%2B`
//! stays as sent, and page patterns may not name `+` (it would have two
//! readings).
//!
//! Refused, because some upstream reads them differently from the gate
//! (each is a [`PathError`], whose `Display` is the 400 body):
//!
//! - a target not starting with `/`, or containing a raw `#` or `?`
//!   ([`PathError::NotOriginForm`]);
//! - `%2F` and `%5C`: escaped slashes are a separator to some upstreams and
//!   data to others ([`PathError::EncodedSlash`]); a raw `\` is a separator
//!   on Windows ([`PathError::Backslash`]);
//! - `%3F` and `%23`: an upstream that decodes the path before splitting
//!   off the query would read `/internal%3F` as `/internal`
//!   ([`PathError::EncodedDelimiter`]);
//! - escaped characters that NFKC folds into `.`, `/` or `\` (fullwidth
//!   dots and slashes): an upstream that folds them would see a traversal
//!   the gate never saw ([`PathError::LookalikeSeparator`]);
//! - control characters, raw or escaped, including NUL and DEL
//!   ([`PathError::ControlChar`]);
//! - `;` raw or as `%3B`: Tomcat and Jetty strip `;params` from segments, so
//!   `/internal;x/` can be read as `/internal/`; refusing it is the only
//!   option with one reading ([`PathError::PathParameter`]);
//! - a segment that ends in `.` or a space once decoded, other than the dot
//!   segments themselves: Windows/IIS-style upstreams read `/internal./` and
//!   `/internal%20/` as `/internal/` ([`PathError::TrailingDotOrSpace`]);
//! - `%25` introducing an escape of a dot, of `%`, or of any character
//!   refused escaped above (`%252e`, `%252f`, `%255c`, `%2500`, `%2525`,
//!   and IIS's `%25u`): an upstream that decodes twice would read a dot
//!   segment, a separator or a NUL ([`PathError::DoubleEncoded`]);
//! - escaped bytes ≥ 0x80 that do not decode to UTF-8
//!   ([`PathError::InvalidUtf8`]), malformed escapes
//!   ([`PathError::BadPercentEncoding`]), `..` above the root
//!   ([`PathError::AboveRoot`], never clamped to `/`), and raw paths longer
//!   than [`MAX_PATH_LEN`] ([`PathError::TooLong`]).
//!
//! The output starts with `/`, is ASCII, contains no `//`, `/./` or `/../`
//! and does not end in `/.` or `/..`; normalizing it again returns it
//! unchanged. The hot path allocates nothing: an input that is already
//! normal (or only loses a trailing `.`/`..`) comes back as
//! [`Cow::Borrowed`].
//!

use std::borrow::Cow;

/// Why a request path was refused; [`PathError::reason`] (also the
/// `Display` text) is the 400 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// The target does not start with `/`, or contains a raw `#` or `?`.
    NotOriginForm,
    /// `%2F` or `%5C`: an escaped slash or backslash.
    EncodedSlash,
    /// A raw `\`.
    Backslash,
    /// A control character (0x00–0x1F or 0x7F), raw or percent-encoded.
    ControlChar,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// Percent-encoded bytes that are not valid UTF-8.
    InvalidUtf8,
    /// A `..` segment that would go above the root.
    AboveRoot,
    /// A `;` (path parameter), raw or as `%3B`.
    PathParameter,
    /// A segment ending in `.` or a space (other than `.` and `..`).
    TrailingDotOrSpace,
    /// `%3F` or `%23`: an escaped `?` or `#`.
    EncodedDelimiter,
    /// An escaped character that Unicode normalization folds into `.`, `/`
    /// or `\` (fullwidth dots and slashes and their kin).
    LookalikeSeparator,
    /// The raw path is longer than [`MAX_PATH_LEN`].
    TooLong,
    /// `%25` introducing an escape of a character refused escaped, a dot,
    /// or another `%` (`%252e`, `%252F`, `%255c`, `%2500`, `%2525`,
    /// `%25u002e`): an upstream that decodes twice would read a dot
    /// segment, a separator or a NUL the gate never saw.
    DoubleEncoded,
}

impl PathError {
    /// A short, fixed reason for the 400 body and the log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "request target is not an origin-form path",
            PathError::EncodedSlash => "escaped slash or backslash in path",
            PathError::Backslash => "backslash in path",
            PathError::ControlChar => "control character in path",
            PathError::BadPercentEncoding => "malformed percent-encoding in path",
            PathError::InvalidUtf8 => "percent-encoded bytes in path are not valid UTF-8",
            PathError::AboveRoot => "path goes above the root",
            PathError::PathParameter => "path parameters (';') are not allowed",
            PathError::TrailingDotOrSpace => "path segment ends in a dot or a space",
            PathError::TooLong => "path too long",
            PathError::EncodedDelimiter => "escaped '?' or '#' in path",
            PathError::LookalikeSeparator => "look-alike dot or slash character in path",
            PathError::DoubleEncoded => {
                "escaped escape of a dot, separator or control character in path"
            }
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// The longest raw path accepted, in bytes (before normalization).
pub(crate) const MAX_PATH_LEN: usize = 8192;

/// Normalize the path part of an origin-form request target (no query: the
/// caller splits at the first `?`).
///
/// Returns `Cow::Borrowed` when the input is already normal (the hot path
/// allocates nothing then). See the module documentation for the rules.
pub(crate) fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // Raw non-ASCII never comes from hyper, but the function takes any
    // &str: look-alike separators are refused raw as well as escaped.
    if !raw.is_ascii() && raw.chars().any(is_lookalike_separator) {
        return Err(PathError::LookalikeSeparator);
    }
    let mut out = Output::new(raw);
    out.keep_raw(0, 1);
    let mut pos = 1;
    loop {
        // Invariant: `out` ends with '/' here, and `pos` is the start of a
        // segment in `raw`.
        let seg_out = out.len();
        let seg = scan_segment(bytes, pos, &mut out)?;
        let at_end = seg.end == bytes.len();
        match &out.as_str().as_bytes()[seg_out..] {
            // `//` merges; a final empty segment is the trailing slash.
            b"" => {}
            b"." => out.truncate(seg_out),
            b".." => {
                // `seg_out - 1` is the '/' before this segment; drop it and
                // the segment before it, keeping the '/' that precedes that.
                let parent = seg_out.checked_sub(1).ok_or(PathError::AboveRoot)?;
                let prev_slash = out.as_str().as_bytes()[..parent]
                    .iter()
                    .rposition(|&b| b == b'/')
                    .ok_or(PathError::AboveRoot)?;
                out.truncate(prev_slash + 1);
            }
            _ => {
                if matches!(seg.last_decoded, b'.' | b' ') {
                    return Err(PathError::TrailingDotOrSpace);
                }
                if !at_end {
                    out.keep_raw(seg.end, 1);
                }
            }
        }
        if at_end {
            let normal = out.finish();
            // Escaping can triple the length; the output must stay within
            // the limit too, or normalizing it again would fail.
            if normal.len() > MAX_PATH_LEN {
                return Err(PathError::TooLong);
            }
            check_escaped_escapes(&normal)?;
            return Ok(normal);
        }
        pos = seg.end + 1;
    }
}

/// What [`scan_segment`] learned about one segment.
struct Segment {
    /// Index in the raw path of the '/' ending the segment, or its length.
    end: usize,
    /// The segment's last byte after decoding (0 for an empty segment).
    last_decoded: u8,
}

/// Write the segment of `raw` starting at `pos` to `out`, normalized, and
/// return where it ends.
fn scan_segment(raw: &[u8], pos: usize, out: &mut Output<'_>) -> Result<Segment, PathError> {
    let mut utf8 = Utf8Run::default();
    let mut last_decoded = 0;
    let mut i = pos;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_value);
            let lo = raw.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadPercentEncoding);
            };
            let v = hi * 16 + lo;
            if v >= 0x80 {
                utf8.push(v)?;
            } else {
                utf8.end()?;
                check_ascii(v, true)?;
            }
            if is_unreserved(v) || (is_raw_ok_reserved(v) && v != b'+') {
                out.push_byte(v);
            } else if !raw[i + 1].is_ascii_lowercase() && !raw[i + 2].is_ascii_lowercase() {
                out.keep_raw(i, 3);
            } else {
                out.push_escape(v);
            }
            last_decoded = v;
            i += 3;
            continue;
        }
        utf8.end()?;
        if b == b'/' {
            break;
        }
        if b >= 0x80 {
            // Raw non-ASCII: `raw` came from a &str, so it is valid UTF-8;
            // escape each byte so the output is ASCII.
            out.push_escape(b);
        } else {
            check_ascii(b, false)?;
            if is_unreserved(b) || is_raw_ok_reserved(b) {
                out.keep_raw(i, 1);
            } else {
                out.push_escape(b);
            }
        }
        last_decoded = b;
        i += 1;
    }
    utf8.end()?;
    Ok(Segment {
        end: i,
        last_decoded,
    })
}

/// A segment of a normalized path with its `%XX` escapes decoded, as a
/// file name (the `dir` upstream's): `None` if an escape is malformed or
/// the result is not UTF-8. The one place outside [`normalize`] that
/// decodes a path.
pub(crate) fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Refuse a `%25` (an escaped `%`) in the normalized path that, decoded
/// once more, would be an escape of a byte the gate refuses escaped
/// ([`check_ascii`]), of a dot (a dot segment), or of `%` again; or IIS's
/// `%u` form. No portal page needs such a name, so there is no setting.
fn check_escaped_escapes(normal: &str) -> Result<(), PathError> {
    let bytes = normal.as_bytes();
    let mut from = 0;
    while let Some(at) = bytes[from..].windows(3).position(|w| w == b"%25") {
        let next = from + at + 3;
        let rest = &bytes[next..];
        let decoded = match rest {
            [hi, lo, ..] => hex_value(*hi)
                .zip(hex_value(*lo))
                .map(|(hi, lo)| hi * 16 + lo),
            _ => None,
        };
        if rest.first().is_some_and(|b| b.eq_ignore_ascii_case(&b'u')) {
            return Err(PathError::DoubleEncoded);
        }
        if let Some(v) = decoded {
            if matches!(v, b'.' | b'%') || check_ascii(v, true).is_err() {
                return Err(PathError::DoubleEncoded);
            }
        }
        from = next;
    }
    Ok(())
}

/// Refuse an ASCII byte (raw or decoded from `%XX`) that has more than one
/// reading.
fn check_ascii(b: u8, escaped: bool) -> Result<(), PathError> {
    match b {
        0x00..=0x1F | 0x7F => Err(PathError::ControlChar),
        b';' => Err(PathError::PathParameter),
        b'/' | b'\\' if escaped => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::Backslash),
        b'#' | b'?' if !escaped => Err(PathError::NotOriginForm),
        b'#' | b'?' => Err(PathError::EncodedDelimiter),
        _ => Ok(()),
    }
}

/// RFC 3986 `unreserved`: decoded when escaped.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Reserved characters legal raw in a path segment (`pchar` minus `;`).
fn is_raw_ok_reserved(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
    )
}

fn hex_value(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

/// Characters that Unicode compatibility normalization (NFKC, applied by
/// some frameworks to paths) folds into `.`, `/` or `\`: an upstream that
/// folds them would see dot segments or separators the gate never saw.
fn is_lookalike_separator(c: char) -> bool {
    matches!(
        c,
        '\u{FF0E}' // fullwidth full stop
            | '\u{FE52}' // small full stop
            | '\u{2024}' // one dot leader
            | '\u{2025}' // two dot leader
            | '\u{FF0F}' // fullwidth solidus
            | '\u{FF3C}' // fullwidth reverse solidus
            | '\u{FE68}' // small reverse solidus
            | '\u{2215}' // division slash
            | '\u{2044}' // fraction slash
    )
}

/// A run of consecutive escaped bytes ≥ 0x80, which must decode to UTF-8.
#[derive(Default)]
struct Utf8Run {
    buf: [u8; 4],
    len: usize,
    /// Bytes the character needs in all, from its lead byte; 0 between runs.
    want: usize,
}

impl Utf8Run {
    fn push(&mut self, b: u8) -> Result<(), PathError> {
        if self.want == 0 {
            self.want = match b {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => return Err(PathError::InvalidUtf8),
            };
        }
        self.buf[self.len] = b;
        self.len += 1;
        if self.len == self.want {
            // from_utf8 rejects overlong forms, surrogates and > U+10FFFF.
            let decoded =
                std::str::from_utf8(&self.buf[..self.len]).map_err(|_| PathError::InvalidUtf8)?;
            if decoded.chars().any(is_lookalike_separator) {
                return Err(PathError::LookalikeSeparator);
            }
            self.len = 0;
            self.want = 0;
        }
        Ok(())
    }

    /// Something other than an escaped byte ≥ 0x80 follows: the character
    /// must be complete.
    fn end(&self) -> Result<(), PathError> {
        if self.want == 0 {
            Ok(())
        } else {
            Err(PathError::InvalidUtf8)
        }
    }
}

/// The normalized path being built, copied only once it differs from the
/// input: while `owned` is `None` the output is `raw[..len]`.
struct Output<'a> {
    raw: &'a str,
    owned: Option<String>,
    len: usize,
}

impl<'a> Output<'a> {
    fn new(raw: &'a str) -> Self {
        Output {
            raw,
            owned: None,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        match &self.owned {
            Some(s) => s.len(),
            None => self.len,
        }
    }

    fn as_str(&self) -> &str {
        match &self.owned {
            Some(s) => s,
            None => &self.raw[..self.len],
        }
    }

    /// Append `raw[at..at + n]` unchanged; free while the output is still
    /// the input's prefix up to `at`.
    fn keep_raw(&mut self, at: usize, n: usize) {
        match &mut self.owned {
            None if self.len == at => self.len += n,
            _ => {
                let piece = &self.raw.as_bytes()[at..at + n];
                for &b in piece {
                    self.push_byte(b);
                }
            }
        }
    }

    /// Append an ASCII byte that is not a copy of the input at this point.
    fn push_byte(&mut self, b: u8) {
        self.owned_mut().push(char::from(b));
    }

    /// Append `%XX`, hex in upper case.
    fn push_escape(&mut self, b: u8) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let s = self.owned_mut();
        s.push('%');
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xF)]));
    }

    fn owned_mut(&mut self) -> &mut String {
        let (raw, len) = (self.raw, self.len);
        self.owned.get_or_insert_with(|| {
            let mut s = String::with_capacity(raw.len() + 8);
            s.push_str(&raw[..len]);
            s
        })
    }

    fn truncate(&mut self, n: usize) {
        match &mut self.owned {
            Some(s) => s.truncate(n),
            None => self.len = n,
        }
    }

    fn finish(self) -> Cow<'a, str> {
        match self.owned {
            Some(s) => Cow::Owned(s),
            None => Cow::Borrowed(&self.raw[..self.len]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_decodes_to_a_file_name_or_nothing() {
        assert_eq!(decode_segment("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(decode_segment("a%20b").as_deref(), Some("a b"));
        assert_eq!(decode_segment("plain").as_deref(), Some("plain"));
        for bad in ["%zz", "%2", "%FF", "%"] {
            assert_eq!(decode_segment(bad), None, "{bad}");
        }
    }
    use proptest::prelude::*;

    /// `(input, expected)`: `Ok(output)` or the error.
    const CASES: &[(&str, Result<&str, PathError>)] = &[
        // Already normal: unchanged.
        ("/", Ok("/")),
        ("/a", Ok("/a")),
        ("/a/b/", Ok("/a/b/")),
        ("/INTERNAL", Ok("/INTERNAL")),
        ("/a-b_c~d.e", Ok("/a-b_c~d.e")),
        ("/a!$&'()*+,=:@b", Ok("/a!$&'()*+,=:@b")),
        ("/.well-known/x", Ok("/.well-known/x")),
        // Slashes.
        ("//internal", Ok("/internal")),
        ("/a//b///c", Ok("/a/b/c")),
        ("/a//", Ok("/a/")),
        ("//", Ok("/")),
        // Dot segments (RFC 3986 remove_dot_segments).
        ("/internal/./x", Ok("/internal/x")),
        ("/a/b/../c", Ok("/a/c")),
        ("/a/b/..", Ok("/a/")),
        ("/a/.", Ok("/a/")),
        ("/a/..", Ok("/")),
        ("/.", Ok("/")),
        ("/./", Ok("/")),
        ("/a/./../b/", Ok("/b/")),
        ("/public/../internal", Ok("/internal")),
        ("/..", Err(PathError::AboveRoot)),
        ("/a/../../b", Err(PathError::AboveRoot)),
        ("/a/..//../b", Err(PathError::AboveRoot)),
        // Escaped dots are dot segments.
        ("/%2e%2e/", Err(PathError::AboveRoot)),
        ("/a/%2E%2e/b", Ok("/b")),
        ("/a/%2e/b", Ok("/a/b")),
        ("/public/.%2e/internal", Ok("/internal")),
        // Unreserved characters are decoded, others upper-cased.
        ("/%41%62c", Ok("/Abc")),
        ("/%49NTERNAL", Ok("/INTERNAL")),
        ("/%7e%2D%5f", Ok("/~-_")),
        ("/a%c3%a9", Ok("/a%C3%A9")),
        ("/a%C3%A9", Ok("/a%C3%A9")),
        ("/a%20b", Ok("/a%20b")),
        ("/a%21", Ok("/a!")),
        ("/%40me/a%2Bb%3Ac%2c", Ok("/@me/a%2Bb:c,")),
        ("/a+b", Ok("/a+b")),
        ("/a%3f%23", Err(PathError::EncodedDelimiter)),
        ("/%f0%9f%98%80", Ok("/%F0%9F%98%80")),
        // Never decoded twice. `%2541` is `%25` then the literal text
        // `41`: only the escape's own hex digits are upper-cased, the text
        // after it is data.
        ("/%25", Ok("/%25")),
        ("/%2541/%25zz/50%25", Ok("/%2541/%25zz/50%25")),
        // But an escape of an escape of what the gate refuses escaped, of
        // a dot, or of `%` is refused: an upstream that decodes twice
        // would read it as such.
        ("/%252e%252e/", Err(PathError::DoubleEncoded)),
        ("/%252E%252E/", Err(PathError::DoubleEncoded)),
        ("/%252F", Err(PathError::DoubleEncoded)),
        ("/a%255cb", Err(PathError::DoubleEncoded)),
        ("/a%2500", Err(PathError::DoubleEncoded)),
        ("/a%253f", Err(PathError::DoubleEncoded)),
        ("/a%252525", Err(PathError::DoubleEncoded)),
        ("/%25%32%65%25%32%65/", Err(PathError::DoubleEncoded)),
        ("/%25u002e", Err(PathError::DoubleEncoded)),
        // Raw characters not allowed in a URI are escaped; output is ASCII.
        ("/caf\u{e9}", Ok("/caf%C3%A9")),
        ("/a b", Ok("/a%20b")),
        ("/a\"<>^`{|}[]", Ok("/a%22%3C%3E%5E%60%7B%7C%7D%5B%5D")),
        // Escaped slashes.
        ("/..%2f", Err(PathError::EncodedSlash)),
        ("/a%2Fb", Err(PathError::EncodedSlash)),
        ("/a%5cb", Err(PathError::EncodedSlash)),
        ("/a%5Cb", Err(PathError::EncodedSlash)),
        ("/a\\b", Err(PathError::Backslash)),
        // Control characters, raw or escaped.
        ("/a%00", Err(PathError::ControlChar)),
        ("/a%0a", Err(PathError::ControlChar)),
        ("/a%7F", Err(PathError::ControlChar)),
        ("/a\0", Err(PathError::ControlChar)),
        ("/a\tb", Err(PathError::ControlChar)),
        ("/a\x7f", Err(PathError::ControlChar)),
        // Malformed escapes.
        ("/a%zz", Err(PathError::BadPercentEncoding)),
        ("/a%", Err(PathError::BadPercentEncoding)),
        ("/a%4", Err(PathError::BadPercentEncoding)),
        ("/a%4/", Err(PathError::BadPercentEncoding)),
        ("/a%%41", Err(PathError::BadPercentEncoding)),
        // Escaped bytes must form UTF-8.
        ("/a%c3", Err(PathError::InvalidUtf8)),
        ("/a%c3/%a9", Err(PathError::InvalidUtf8)),
        ("/a%c3a", Err(PathError::InvalidUtf8)),
        ("/a%a9", Err(PathError::InvalidUtf8)),
        ("/a%ff", Err(PathError::InvalidUtf8)),
        ("/a%c0%ae", Err(PathError::InvalidUtf8)),
        ("/a%ed%a0%80", Err(PathError::InvalidUtf8)),
        ("/a%f4%90%80%80", Err(PathError::InvalidUtf8)),
        ("/a%c3\u{e9}", Err(PathError::InvalidUtf8)),
        // Path parameters.
        ("/a;b", Err(PathError::PathParameter)),
        ("/internal;x/", Err(PathError::PathParameter)),
        ("/a%3bb", Err(PathError::PathParameter)),
        ("/internal%3F", Err(PathError::EncodedDelimiter)),
        ("/internal%3f/x", Err(PathError::EncodedDelimiter)),
        ("/internal%23", Err(PathError::EncodedDelimiter)),
        (
            "/public/%ef%bc%8e%ef%bc%8e/internal",
            Err(PathError::LookalikeSeparator),
        ),
        ("/a%EF%BC%8F", Err(PathError::LookalikeSeparator)),
        ("/a%e2%88%95b", Err(PathError::LookalikeSeparator)),
        // Trailing dot or space.
        ("/a./", Err(PathError::TrailingDotOrSpace)),
        ("/internal.", Err(PathError::TrailingDotOrSpace)),
        ("/internal%2E/", Err(PathError::TrailingDotOrSpace)),
        ("/internal%20/x", Err(PathError::TrailingDotOrSpace)),
        ("/internal /x", Err(PathError::TrailingDotOrSpace)),
        ("/.../", Err(PathError::TrailingDotOrSpace)),
        // Not origin form.
        ("", Err(PathError::NotOriginForm)),
        ("*", Err(PathError::NotOriginForm)),
        ("a/b", Err(PathError::NotOriginForm)),
        ("http://h/a", Err(PathError::NotOriginForm)),
        ("/a#frag", Err(PathError::NotOriginForm)),
        ("/a?q", Err(PathError::NotOriginForm)),
    ];

    #[test]
    fn table_of_cases() {
        let mut failures = Vec::new();
        for (input, expected) in CASES {
            let got = normalize(input);
            let got = got.as_ref().map(|c| c.as_ref()).map_err(|e| *e);
            if got != *expected {
                failures.push(format!("{input:?}: got {got:?}, want {expected:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn normal_input_is_borrowed() {
        for input in ["/", "/a/b/", "/INTERNAL", "/a%C3%A9/x", "/a/.", "/a/b/.."] {
            assert!(
                matches!(normalize(input), Ok(Cow::Borrowed(_))),
                "{input:?} should not allocate"
            );
        }
        assert!(matches!(normalize("/a%c3%a9"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn too_long_is_refused_by_raw_length() {
        let ok = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert_eq!(normalize(&ok).as_deref(), Ok(ok.as_str()));
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(normalize(&long), Err(PathError::TooLong));
        // Length counts the raw input, even if it would shrink.
        let dots = "/.".repeat(MAX_PATH_LEN / 2 + 1);
        assert_eq!(normalize(&dots), Err(PathError::TooLong));
    }

    #[test]
    fn errors_have_short_display_for_the_400_body() {
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "escaped slash or backslash in path"
        );
        assert_eq!(PathError::AboveRoot.to_string(), "path goes above the root");
        assert_eq!(PathError::TooLong.reason(), "path too long");
    }

    /// Paths built from the characters that matter to normalization.
    fn path_like() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(
                &[
                    "/", "//", ".", "..", "a", "B", "%2e", "%2E", "%41", "%c3%a9", "%20", "%25",
                    "%2f", "%3b", "%", ";", "\\", " ", "\u{e9}", "~", "!", "%c3", "%00", "{",
                ][..],
            ),
            0..24,
        )
        .prop_map(|parts| format!("/{}", parts.concat()))
    }

    fn check_output_shape(out: &str) {
        assert!(out.starts_with('/'), "{out:?}");
        assert!(out.is_ascii(), "{out:?}");
        for bad in ["//", "/./", "/../"] {
            assert!(!out.contains(bad), "{out:?} contains {bad}");
        }
        assert!(!out.ends_with("/.") && !out.ends_with("/.."), "{out:?}");
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent_and_well_formed(raw in path_like()) {
            if let Ok(once) = normalize(&raw) {
                check_output_shape(&once);
                let twice = normalize(&once);
                prop_assert_eq!(twice.as_deref(), Ok(once.as_ref()));
                prop_assert!(matches!(twice, Ok(Cow::Borrowed(_))));
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(raw in any::<String>()) {
            let slashed = format!("/{raw}");
            for input in [raw.as_str(), slashed.as_str()] {
                if let Ok(out) = normalize(input) {
                    check_output_shape(&out);
                    let again = normalize(&out);
                    prop_assert_eq!(again.as_deref(), Ok(out.as_ref()));
                }
            }
        }

        #[test]
        fn escaping_unreserved_characters_changes_nothing(
            raw in "/[a-zA-Z0-9._~/-]{0,30}",
            mask in any::<u32>(),
            lower in any::<bool>(),
        ) {
            let mut escaped = String::new();
            for (i, c) in raw.chars().enumerate() {
                if c != '/' && mask & (1 << (i % 32)) != 0 {
                    let e = format!("%{:02X}", u32::from(c));
                    escaped.push_str(&if lower { e.to_lowercase() } else { e });
                } else {
                    escaped.push(c);
                }
            }
            prop_assert_eq!(normalize(&escaped), normalize(&raw).map(|c| Cow::Owned(c.into_owned())));
        }
    }
}
