//! The pages, over real HTTP: the files compiled into the binary (types, ETags,
//! conditional requests, compression), the binary alone in an empty folder, live
//! `-files` folders and their confinement, and `-browse`.
//!
//! Requests are written by hand on a TCP socket, so paths like `/../x` reach the
//! daemon exactly as sent (HTTP clients would normalise them).

mod common;
#[path = "browser/daemon.rs"]
mod daemon;

use std::{
    io::Read as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use common::{within, Daemon};
use daemon::{BinDaemon, Options, TempDir};
use libp2p_websocket::Config;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ------------------------------------------------------------------ a tiny HTTP client

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body with any `Content-Encoding: gzip` undone.
    fn decoded(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            None => self.body.clone(),
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..]).read_to_end(&mut out).unwrap();
                out
            }
            Some(other) => panic!("unexpected content-encoding {other}"),
        }
    }
}

/// Sends `head` (a request line and headers, without the final blank line) as is, with
/// `Connection: close`, and reads the whole response.
async fn raw(addr: SocketAddr, head: &str) -> Reply {
    within(&format!("HTTP {head:?}"), async {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("{head}\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut bytes = Vec::new();
        socket.read_to_end(&mut bytes).await.unwrap();
        parse(&bytes, head.starts_with("HEAD "))
    })
    .await
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut head = format!("GET {path} HTTP/1.1");
    for (name, value) in headers {
        head.push_str(&format!("\r\n{name}: {value}"));
    }
    raw(addr, &head).await
}

fn parse(bytes: &[u8], head_only: bool) -> Reply {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut reply = Reply { status, headers, body: Vec::new() };
    let rest = &bytes[end + 4..];
    if head_only || status == 304 {
        assert!(rest.is_empty(), "a body after a {status} response");
        return reply;
    }
    reply.body = if reply.header("transfer-encoding") == Some("chunked") {
        dechunk(rest)
    } else if let Some(len) = reply.header("content-length") {
        let len: usize = len.parse().unwrap();
        assert_eq!(rest.len(), len, "body length against Content-Length");
        rest.to_vec()
    } else {
        rest.to_vec()
    };
    reply
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ------------------------------------------------------------------ helpers

/// The ETag the daemon must give these bytes: FNV-1a 64, as `build.rs` computes it.
fn etag_of(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

/// Every file below `dir`, as paths relative to it (`/`-separated), skipping dot files.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/");
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn source(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(ROOT).join(rel)).unwrap()
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

async fn files_daemon(folders: &[&Path]) -> Daemon {
    let config =
        Config { files: folders.iter().map(|f| f.to_path_buf()).collect(), ..Config::local() };
    Daemon::start(config).await
}

// ------------------------------------------------------------------ embedded pages

#[tokio::test]
async fn every_page_is_embedded_with_its_type_and_etag() {
    let daemon = Daemon::local().await;

    let index = get(daemon.addr, "/", &[]).await;
    assert_eq!(index.status, 200);
    assert_eq!(index.body, source("html/index.html"), "/ serves html/index.html");
    assert_eq!(index.header("content-type"), Some("text/html; charset=utf-8"));

    let expected_type = |path: &str| match path.rsplit('.').next().unwrap() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        other => panic!("add the content type of .{other} files to this test"),
    };
    let mut seen = 0;
    for folder in ["html", "examples"] {
        for rel in files_below(&Path::new(ROOT).join(folder)) {
            let bytes = source(&format!("{folder}/{rel}"));
            let reply = get(daemon.addr, &format!("/{rel}"), &[]).await;
            assert_eq!(reply.status, 200, "/{rel}");
            assert!(reply.body == bytes, "/{rel} is served byte for byte");
            assert_eq!(reply.header("content-type"), Some(expected_type(&rel)), "/{rel}");
            assert_eq!(reply.header("etag"), Some(etag_of(&bytes).as_str()), "/{rel}: strong ETag");
            assert_eq!(reply.header("cache-control"), Some("no-cache"), "/{rel}");
            seen += 1;
        }
    }
    assert!(seen >= 6, "index.html, protocol.js, favicon.svg and the chat's three files at least");

    let head = raw(daemon.addr, "HEAD /protocol.js HTTP/1.1").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/javascript; charset=utf-8"));

    for missing in ["/nope.html", "/chat", "/html/index.html", "/examples/chat.html"] {
        assert_eq!(get(daemon.addr, missing, &[]).await.status, 404, "{missing}");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn if_none_match_answers_304() {
    let daemon = Daemon::local().await;
    let first = get(daemon.addr, "/chat.js", &[]).await;
    let etag = first.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong ETag: {etag}");

    let weak = format!("W/{etag}");
    let listed = format!("\"0000000000000000\", {etag}");
    for matching in [etag.as_str(), weak.as_str(), listed.as_str(), "*"] {
        let again = get(daemon.addr, "/chat.js", &[("If-None-Match", matching)]).await;
        assert_eq!(again.status, 304, "If-None-Match: {matching}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
    }
    let other = get(daemon.addr, "/chat.js", &[("If-None-Match", "\"0123456789abcdef\"")]).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body, first.body);
    // Another file's ETag does not match this one.
    let index_etag = get(daemon.addr, "/", &[]).await.header("etag").unwrap().to_string();
    assert_ne!(index_etag, etag);
    let crossed = get(daemon.addr, "/chat.js", &[("If-None-Match", &index_etag)]).await;
    assert_eq!(crossed.status, 200);
    daemon.stop().await;
}

#[tokio::test]
async fn text_is_compressed_when_asked() {
    let daemon = Daemon::local().await;
    let original = source("html/protocol.js");

    let plain = get(daemon.addr, "/protocol.js", &[]).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, original);

    let gzip = get(daemon.addr, "/protocol.js", &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(gzip.status, 200);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gzip.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(gzip
        .header("vary")
        .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")));
    assert!(gzip.body.len() < original.len() / 2, "gzip shrinks protocol.js");
    assert_eq!(gzip.decoded(), original);

    let br = get(daemon.addr, "/chat.css", &[("Accept-Encoding", "br")]).await;
    assert_eq!(br.status, 200);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert!(br.body.len() < source("examples/chat.css").len());

    let html = get(daemon.addr, "/", &[("Accept-Encoding", "gzip, br;q=0")]).await;
    assert_eq!(html.header("content-encoding"), Some("gzip"));
    assert_eq!(html.decoded(), source("html/index.html"));
    daemon.stop().await;
}

/// The binary needs none of the repository's files: copied alone into an empty
/// folder and run from there, it serves the pages compiled into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_alone_serves_its_pages() {
    let dir = TempDir::new("alone");
    let copy = dir.path().join("libp2p-websocket");
    std::fs::copy(daemon::binary(), &copy).unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let process = tokio::task::spawn_blocking({
        let (copy, run) = (copy.clone(), run.clone());
        move || BinDaemon::start(Options::new(&["-nobrowse"]).program(&copy).dir(&run))
    })
    .await
    .unwrap();
    for (page, file) in [
        ("/chat.html", "examples/chat.html"),
        ("/protocol.js", "html/protocol.js"),
        ("/chat.js", "examples/chat.js"),
        ("/", "html/index.html"),
    ] {
        let reply = get(process.addr(), page, &[]).await;
        assert_eq!(reply.status, 200, "{page}");
        assert!(reply.body == source(file), "{page} is {file}");
    }
    assert_eq!(std::fs::read_dir(&run).unwrap().count(), 0, "it wrote nothing in its folder");
    drop(process);
}

// ------------------------------------------------------------------ -files

#[tokio::test]
async fn files_folders_are_read_live_and_the_first_holding_a_path_wins() {
    let tmp = TempDir::new("files");
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    write(&first.join("index.html"), "first index");
    write(&first.join("both.html"), "both, from first");
    write(&first.join("app.js"), "export const where = 'first';");
    write(&second.join("both.html"), "both, from second");
    write(&second.join("only-second.css"), "body { color: red }");
    write(&second.join("sub/index.html"), "second sub index");
    write(&second.join("sub/deep/page with space.txt"), "spaced");
    let daemon = files_daemon(&[&first, &second]).await;

    let index = get(daemon.addr, "/", &[]).await;
    assert_eq!((index.status, index.text().as_str()), (200, "first index"));
    assert_eq!(get(daemon.addr, "/both.html", &[]).await.text(), "both, from first");
    let css = get(daemon.addr, "/only-second.css", &[]).await;
    assert_eq!((css.status, css.text().as_str()), (200, "body { color: red }"));
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let js = get(daemon.addr, "/app.js", &[]).await;
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(get(daemon.addr, "/sub/", &[]).await.text(), "second sub index");
    assert_eq!(get(daemon.addr, "/sub/deep/page%20with%20space.txt", &[]).await.text(), "spaced");
    // Instead of the embedded pages, not on top of them.
    assert_eq!(get(daemon.addr, "/chat.html", &[]).await.status, 404);
    assert_eq!(get(daemon.addr, "/missing.html", &[]).await.status, 404);

    // Live: an edit shows on the next request, with a new ETag.
    let before = get(daemon.addr, "/both.html", &[]).await;
    let old_etag = before.header("etag").unwrap().to_string();
    assert_eq!(old_etag, etag_of(b"both, from first"));
    let cached = get(daemon.addr, "/both.html", &[("If-None-Match", &old_etag)]).await;
    assert_eq!(cached.status, 304);
    write(&first.join("both.html"), "both, edited");
    let after = get(daemon.addr, "/both.html", &[("If-None-Match", &old_etag)]).await;
    assert_eq!((after.status, after.text().as_str()), (200, "both, edited"));
    assert_eq!(after.header("etag"), Some(etag_of(b"both, edited").as_str()));
    // A file added while running is served; one removed from the first folder falls
    // through to the second.
    write(&first.join("new.html"), "added later");
    assert_eq!(get(daemon.addr, "/new.html", &[]).await.text(), "added later");
    std::fs::remove_file(first.join("both.html")).unwrap();
    assert_eq!(get(daemon.addr, "/both.html", &[]).await.text(), "both, from second");

    // Big text files are compressed here too.
    write(&first.join("big.js"), &"console.log('compress me');\n".repeat(200));
    let big = get(daemon.addr, "/big.js", &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(big.header("content-encoding"), Some("gzip"));
    assert_eq!(big.decoded(), "console.log('compress me');\n".repeat(200).into_bytes());
    daemon.stop().await;
}

/// Files too big to read whole are streamed, and tagged by length and modification time.
#[tokio::test]
async fn a_big_file_is_streamed_with_its_type_length_and_etag() {
    let tmp = TempDir::new("streamed");
    let folder = tmp.path().join("www");
    let line = "console.log('a line of a big script');\n";
    let text = line.repeat(256 * 1024 / line.len());
    write(&folder.join("big.js"), &text);
    let daemon = files_daemon(&[&folder]).await;

    let reply = get(daemon.addr, "/big.js", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body == text.as_bytes(), "served byte for byte");
    assert_eq!(reply.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(reply.header("content-length"), Some(text.len().to_string().as_str()));
    let etag = reply.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "strong: {etag}");
    assert_eq!(reply.header("cache-control"), Some("no-cache"));
    let head = raw(daemon.addr, "HEAD /big.js HTTP/1.1").await;
    assert_eq!(head.header("content-length"), Some(text.len().to_string().as_str()));

    for matching in [etag.clone(), format!("W/{etag}")] {
        let again = get(daemon.addr, "/big.js", &[("If-None-Match", &matching)]).await;
        assert_eq!(again.status, 304, "If-None-Match: {matching}");
        assert_eq!(again.header("etag"), Some(etag.as_str()));
    }
    let gzip = get(daemon.addr, "/big.js", &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert!(gzip.decoded() == text.as_bytes(), "compressed while streamed");

    // An edit (here one that changes the length) gives a new ETag.
    let edited = format!("{text}// edited\n");
    write(&folder.join("big.js"), &edited);
    let after = get(daemon.addr, "/big.js", &[("If-None-Match", &etag)]).await;
    assert_eq!(after.status, 200);
    assert!(after.body == edited.as_bytes());
    assert_ne!(after.header("etag"), Some(etag.as_str()));
    daemon.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn no_request_leaves_a_files_folder() {
    const SECRET: &str = "SECRET-outside-the-folder";
    let tmp = TempDir::new("escape");
    let served = tmp.path().join("served");
    write(&served.join("page.html"), "inside");
    write(&served.join("sub/inner.html"), "inner");
    let secret = tmp.path().join("secret.txt");
    write(&secret, SECRET);
    write(&tmp.path().join("served-sibling/x.html"), SECRET);
    write(&served.join(".env"), SECRET);
    write(&served.join(".git/config"), SECRET);
    std::os::unix::fs::symlink(&secret, served.join("link.txt")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", served.join("relative-link.txt")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), served.join("up")).unwrap();
    // A link that stays inside is fine.
    std::os::unix::fs::symlink("page.html", served.join("alias.html")).unwrap();
    let daemon = files_daemon(&[&served]).await;
    let abs = secret.to_string_lossy().into_owned();
    let abs_encoded = abs.replace('/', "%2F");

    assert_eq!(get(daemon.addr, "/page.html", &[]).await.text(), "inside");
    assert_eq!(get(daemon.addr, "/alias.html", &[]).await.text(), "inside");
    assert_eq!(get(daemon.addr, "/sub/inner.html", &[]).await.text(), "inner");

    let refused: Vec<(String, u16)> = vec![
        // dot-dot, plain and percent-encoded in every way
        ("/../secret.txt".into(), 400),
        ("/sub/../../secret.txt".into(), 400),
        ("/%2e%2e/secret.txt".into(), 400),
        ("/%2E%2E/secret.txt".into(), 400),
        ("/%2e%2e%2fsecret.txt".into(), 400),
        ("/sub/%2e%2e%2F%2e%2e%2Fsecret.txt".into(), 400),
        ("/.%2e/secret.txt".into(), 400),
        ("/..%5csecret.txt".into(), 400),
        ("/../served-sibling/x.html".into(), 400),
        // absolute paths
        (format!("/{abs_encoded}"), 400),
        (format!("/%2F{}", &abs[1..]), 400),
        // a doubled slash is only a relative path inside the folder
        (format!("/{abs}"), 404),
        // symlinks that point out of the folder
        ("/link.txt".into(), 404),
        ("/relative-link.txt".into(), 404),
        ("/up/secret.txt".into(), 404),
        // dot files, as build.rs leaves them out of the binary
        ("/.env".into(), 404),
        ("/.git/config".into(), 404),
        ("/%2egit/config".into(), 404),
        // NUL and broken escapes
        ("/page.html%00".into(), 400),
        ("/%zz".into(), 400),
    ];
    for (path, status) in &refused {
        let reply = get(daemon.addr, path, &[]).await;
        assert_eq!(reply.status, *status, "GET {path}: {}", reply.text());
        assert!(!reply.text().contains(SECRET), "GET {path} leaked the file");
    }
    // An absolute-form request target with dot-dot segments.
    let absolute_form = format!("GET http://{}/../secret.txt HTTP/1.1", daemon.addr);
    let reply = raw(daemon.addr, &absolute_form).await;
    assert_eq!(reply.status, 400, "{absolute_form}");
    assert!(!reply.text().contains(SECRET));
    daemon.stop().await;
}

/// The request's path has no dot segment, but the file it resolves to is a dot file.
#[cfg(unix)]
#[tokio::test]
async fn a_symlink_to_a_dot_file_is_not_served() {
    const SECRET: &str = "SECRET-a-dot-file";
    let tmp = TempDir::new("dot-link");
    // The served folder itself may sit below a dot folder: only what is below it counts.
    let served = tmp.path().join(".site");
    write(&served.join("page.html"), "inside");
    write(&served.join(".env"), SECRET);
    write(&served.join(".git/config"), SECRET);
    write(&served.join("sub/.hidden/notes.txt"), SECRET);
    std::os::unix::fs::symlink(".env", served.join("env.txt")).unwrap();
    std::os::unix::fs::symlink(served.join(".env"), served.join("env-absolute.txt")).unwrap();
    std::os::unix::fs::symlink(".git/config", served.join("config.txt")).unwrap();
    std::os::unix::fs::symlink(".git", served.join("git")).unwrap();
    std::os::unix::fs::symlink("sub/.hidden", served.join("hidden")).unwrap();
    std::os::unix::fs::symlink("page.html", served.join("alias.html")).unwrap();
    let daemon = files_daemon(&[&served]).await;

    assert_eq!(get(daemon.addr, "/page.html", &[]).await.text(), "inside");
    assert_eq!(get(daemon.addr, "/alias.html", &[]).await.text(), "inside");
    for path in ["/env.txt", "/env-absolute.txt", "/config.txt", "/git/config", "/hidden/notes.txt"]
    {
        let reply = get(daemon.addr, path, &[]).await;
        assert_eq!(reply.status, 404, "GET {path}: {}", reply.text());
        assert!(!reply.text().contains(SECRET), "GET {path} leaked a dot file");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_missing_files_folder_is_a_startup_error() {
    let tmp = TempDir::new("missing");
    let missing = tmp.path().join("no-such-folder");
    let not_a_folder = tmp.path().join("file.txt");
    write(&not_a_folder, "x");
    for (bad, says) in [(&missing, "No such file"), (&not_a_folder, "not a folder")] {
        let config =
            Config { files: vec![tmp.path().to_path_buf(), bad.clone()], ..Config::local() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let result =
            within("run() with a bad -files", libp2p_websocket::run(config, listener, async {}))
                .await;
        let message = result.expect_err("run() must refuse the folder").to_string();
        assert!(message.contains(&bad.display().to_string()), "names the folder: {message}");
        assert!(message.contains("-files"), "names the flag: {message}");
        assert!(message.contains(says), "says why: {message}");
    }

    let bad = missing.display().to_string();
    let (code, output) = tokio::task::spawn_blocking(move || {
        daemon::run_to_exit(Options::new(&["-nobrowse", "-files", &bad]), Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(code.is_some_and(|c| c != 0), "the binary exits non-zero, got {code:?}:\n{output}");
    assert!(output.contains(&missing.display().to_string()), "names the folder:\n{output}");
}

// ------------------------------------------------------------------ -browse

/// A folder to use as PATH holding only a fake `xdg-open` that writes its argument to
/// `opened.txt` beside it (with nothing else on PATH, it names programs by full path).
#[cfg(unix)]
fn fake_opener(tmp: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = tmp.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = tmp.join("opened.txt");
    let script = bin.join("xdg-open");
    write(
        &script,
        &format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > '{}.tmp'\n/bin/mv '{0}.tmp' '{0}'\n",
            record.display()
        ),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, record)
}

#[cfg(unix)]
fn wait_for_file(path: &Path, timeout: Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Some(text);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_opens_the_page_on_localhost() {
    let tmp = TempDir::new("browse");
    let (bin, record) = fake_opener(tmp.path());
    let path = bin.display().to_string();
    let (process, opened) = tokio::task::spawn_blocking(move || {
        let process = BinDaemon::start(Options::new(&["-browse", "chat.html"]).env("PATH", path));
        let opened = wait_for_file(&record, Duration::from_secs(20));
        (process, opened)
    })
    .await
    .unwrap();
    let expected = format!("http://localhost:{}/chat.html", process.port);
    assert_eq!(opened.as_deref(), Some(expected.as_str()), "the URL handed to xdg-open");
    assert_eq!(get(process.addr(), "/chat.html", &[]).await.status, 200);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_without_a_browser_warns_and_keeps_serving() {
    let tmp = TempDir::new("nobrowser");
    let empty = tmp.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let path = empty.display().to_string();
    let mut process = tokio::task::spawn_blocking(move || {
        BinDaemon::start(
            Options::new(&["-browse", "/chat.html"]).env("PATH", path).env("BROWSER", "/bin/false"),
        )
    })
    .await
    .unwrap();
    let url = format!("http://localhost:{}/chat.html", process.port);
    let warning =
        process.wait_for_line(&["could not open a browser", &url], Duration::from_secs(20));
    assert!(warning.is_some(), "a warning naming {url}; the daemon printed:\n{}", process.output());
    assert_eq!(get(process.addr(), "/chat.html", &[]).await.status, 200);
    assert!(process.running(), "no browser is not a failure");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobrowse_overrides_browse() {
    let tmp = TempDir::new("nobrowse");
    let (bin, record) = fake_opener(tmp.path());
    let path = bin.display().to_string();
    let process = tokio::task::spawn_blocking(move || {
        BinDaemon::start(Options::new(&["-browse", "chat.html", "-nobrowse"]).env("PATH", path))
    })
    .await
    .unwrap();
    // The daemon tries the browser before it answers its first request.
    assert_eq!(get(process.addr(), "/chat.html", &[]).await.status, 200);
    drop(process);
    assert!(!record.exists(), "-nobrowse must not open a browser");
}
