//! The pages: compiled into the binary by `build.rs`, or read live from `-files` folders
//! (small files whole, bigger ones streamed from disk).

use std::path::{Component, Path, PathBuf};

use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use crate::{limit_log::LimitLog, protocol::text};

#[path = "mime.rs"]
mod mime;

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub etag: &'static str,
    pub body: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The embedded file at `path` (no leading `/`).
pub fn embedded(path: &str) -> Option<&'static Asset> {
    EMBEDDED.binary_search_by(|a| a.path.cmp(path)).ok().map(|i| &EMBEDDED[i])
}

/// Where pages come from.
#[derive(Debug, Clone)]
pub enum Pages {
    Embedded,
    /// `-files` folders, canonical, first holding the path wins.
    Folders(Vec<PathBuf>),
}

impl Pages {
    /// Checks the `-files` folders exist and fixes their canonical paths.
    pub fn new(folders: &[PathBuf]) -> std::io::Result<Self> {
        if folders.is_empty() {
            return Ok(Self::Embedded);
        }
        let mut canonical = Vec::new();
        for folder in folders {
            let path = folder.canonicalize().map_err(|e| {
                std::io::Error::new(e.kind(), format!("-files {}: {e}", folder.display()))
            })?;
            if !path.is_dir() {
                let msg = format!("-files {}: not a folder", folder.display());
                return Err(std::io::Error::new(std::io::ErrorKind::NotADirectory, msg));
            }
            canonical.push(path);
        }
        Ok(Self::Folders(canonical))
    }

    /// Answers a GET for `uri_path` (as sent, percent-encoded).
    pub async fn serve(&self, uri_path: &str, headers: &HeaderMap) -> Response {
        let Some(path) = clean_path(uri_path) else {
            return (StatusCode::BAD_REQUEST, "bad path").into_response();
        };
        match self {
            Self::Embedded => match embedded(&path) {
                Some(a) => respond(headers, a.content_type, a.etag.to_string(), Body::from(a.body)),
                None => not_found(),
            },
            // Like build.rs, which embeds no dot file: `.git/`, `.env` and the like stay
            // private even when a whole project folder is served.
            Self::Folders(_) if path.split('/').any(|segment| segment.starts_with('.')) => {
                not_found()
            }
            Self::Folders(folders) => {
                for folder in folders {
                    if let Some(file) = open_inside(folder, &path).await {
                        return file.respond(headers, mime::content_type(&path)).await;
                    }
                }
                not_found()
            }
        }
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

fn respond(headers: &HeaderMap, content_type: &'static str, etag: String, body: Body) -> Response {
    // If-None-Match compares weakly (RFC 9110, 13.1.2): `W/"x"` matches `"x"`.
    let matches = headers.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
        })
    });
    let etag = HeaderValue::from_str(&etag).expect("hex etag");
    let mut response =
        if matches { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !matches {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// The relative file path a URI path names, or `None` if it tries to leave the folder:
/// percent-decoded, no `..`/`.` segment, no backslash, no NUL, no absolute part.
fn clean_path(uri_path: &str) -> Option<String> {
    let decoded = percent_decode(uri_path.trim_start_matches('/'))?;
    let path = if decoded.is_empty() || decoded.ends_with('/') {
        format!("{decoded}index.html")
    } else {
        decoded
    };
    if path.contains('\\') || path.contains('\0') {
        return None;
    }
    let ok = Path::new(&path).components().all(|c| matches!(c, Component::Normal(_)));
    ok.then_some(path)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Files up to this size are read whole and tagged by their content, as embedded ones
/// are; bigger ones are streamed and tagged by their length and modification time.
const READ_WHOLE_MAX: u64 = 64 * 1024;
/// How much of a streamed file is read at a time: with hyper's write buffer, about what
/// one download holds in memory while its client is slow.
const STREAM_CHUNK: usize = 64 * 1024;

/// A file found in a `-files` folder, open.
struct FoundFile {
    file: tokio::fs::File,
    metadata: std::fs::Metadata,
}

/// Opens `rel` below `folder`, refusing anything (a symlink included) that resolves
/// outside it or to a dot file or folder inside it.
async fn open_inside(folder: &Path, rel: &str) -> Option<FoundFile> {
    let full = tokio::fs::canonicalize(folder.join(rel)).await.ok()?;
    // Requests name the path: it is logged escaped, a few times a minute at most.
    static LOG: LimitLog = LimitLog::with_burst(20);
    let refused = |why: &str| {
        if let Some(unlogged) = LOG.hit() {
            tracing::warn!(path = %text::quote(rel), unlogged, "refused a path that {why}");
        }
    };
    let Ok(below) = full.strip_prefix(folder) else {
        refused("leaves its -files folder");
        return None;
    };
    // The request's path has no dot segment, but a symlink may still lead to one.
    if below.components().any(|c| c.as_os_str().as_encoded_bytes().starts_with(b".")) {
        refused("resolves to a dot file");
        return None;
    }
    // Checked before opening: opening a FIFO would wait for a writer.
    if !tokio::fs::metadata(&full).await.ok()?.is_file() {
        return None;
    }
    let file = tokio::fs::File::open(&full).await.ok()?;
    let metadata = file.metadata().await.ok()?;
    metadata.is_file().then_some(FoundFile { file, metadata })
}

impl FoundFile {
    async fn respond(self, headers: &HeaderMap, content_type: &'static str) -> Response {
        use tokio::io::AsyncReadExt as _;
        let len = self.metadata.len();
        if len <= READ_WHOLE_MAX {
            let mut bytes = Vec::with_capacity(len as usize);
            // `take`: a file that grew since it was measured is still read within bounds.
            if self.file.take(READ_WHOLE_MAX).read_to_end(&mut bytes).await.is_err() {
                return not_found();
            }
            let etag = format!("\"{:016x}\"", mime::fnv1a(&bytes));
            return respond(headers, content_type, etag, Body::from(bytes));
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(self.file.take(len), STREAM_CHUNK);
        let mut response = respond(
            headers,
            content_type,
            metadata_etag(&self.metadata),
            Body::from_stream(stream),
        );
        if response.status() == StatusCode::OK {
            // Told up front, so the client knows the size; a file cut short while it is
            // sent ends the connection instead of passing for whole.
            response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        response
    }
}

/// The strong ETag of a streamed file: its length and modification time, in nanoseconds
/// (the `-` keeps it apart from the 16 hex digits of a content hash).
fn metadata_etag(metadata: &std::fs::Metadata) -> String {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{:x}-{modified:x}\"", metadata.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape() {
        assert_eq!(clean_path("/").as_deref(), Some("index.html"));
        assert_eq!(clean_path("/chat.html").as_deref(), Some("chat.html"));
        assert_eq!(clean_path("/a%20b.js").as_deref(), Some("a b.js"));
        for bad in [
            "/../x",
            "/%2e%2e/x",
            "/a/../../x",
            "/%2E%2E%2Fetc",
            "/..%5cx",
            "/%2Fetc%2Fpasswd",
            "/%00",
            "/%zz",
        ] {
            assert_eq!(clean_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn embedded_assets_are_sorted() {
        assert!(EMBEDDED.windows(2).all(|w| w[0].path < w[1].path));
    }
}
