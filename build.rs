//! Embeds every file under `html/` and `examples/` into the binary.
//!
//! Both folders share one URL namespace at `/`; where both hold a path, `html/` wins.
//! Each file gets its content type and a strong ETag (FNV-1a 64 of its bytes) computed
//! here, so serving one costs no work at run time.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

const FOLDERS: [&str; 2] = ["html", "examples"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    // Once any rerun-if-changed is printed, cargo watches only what is named: the
    // content types come from this file too.
    println!("cargo:rerun-if-changed=src/http/mime.rs");
    let mut assets: BTreeMap<String, PathBuf> = BTreeMap::new();
    for folder in FOLDERS {
        let dir = root.join(folder);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files = Vec::new();
        walk(&dir, &mut files)?;
        for file in files {
            println!("cargo:rerun-if-changed={}", file.display());
            let rel = file.strip_prefix(&dir)?.to_string_lossy().replace('\\', "/");
            assets.entry(rel).or_insert(file);
        }
    }
    let mut out = String::from("pub static EMBEDDED: &[Asset] = &[\n");
    for (path, file) in &assets {
        let bytes = std::fs::read(file)?;
        writeln!(
            out,
            "    Asset {{ path: {path:?}, content_type: {:?}, etag: \"\\\"{:016x}\\\"\", body: include_bytes!({:?}) }},",
            content_type(path),
            fnv1a(&bytes),
            file.display().to_string(),
        )?;
    }
    out.push_str("];\n");
    std::fs::write(PathBuf::from(std::env::var("OUT_DIR")?).join("assets.rs"), out)?;
    Ok(())
}

/// Every regular file below `dir`, sorted; a missing folder holds none.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let mut entries: Vec<_> = entries.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || name == "node_modules" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), files)?;
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}

// The content types and ETag hash are shared with the server, which computes them for
// `-files` folders at run time.
include!("src/http/mime.rs");
