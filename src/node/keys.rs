//! The node's identity: keys in the original's text format, and key files.
//!
//! The original's KEY is go-libp2p's `ConfigEncodeKey(MarshalPrivateKey(key))`: standard
//! base64 of the protobuf private key, which is what rust-libp2p's
//! [`Keypair::to_protobuf_encoding`] writes. RSA keys decode but rust-libp2p cannot
//! encode them again, so the text the user gave is kept and handed back as it was.

use std::path::Path;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use libp2p::identity::Keypair;
use thiserror::Error;

/// Why a key could not be used.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("key is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("key is not a libp2p protobuf private key: {0}")]
    Decode(#[from] libp2p::identity::DecodingError),
    #[error("key file {path}: {source}")]
    File { path: String, source: std::io::Error },
}

/// A keypair together with its text form.
#[derive(Clone)]
pub struct NodeKey {
    pub keypair: Keypair,
    /// Standard base64 of the protobuf private key, as Identify's KEY carries it.
    pub text: String,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").field("peer_id", &self.keypair.public().to_peer_id()).finish()
    }
}

impl NodeKey {
    /// A fresh Ed25519 key.
    pub fn generate() -> Self {
        let keypair = Keypair::generate_ed25519();
        let text = STANDARD.encode(keypair.to_protobuf_encoding().expect("ed25519 encodes"));
        Self { keypair, text }
    }

    /// Parses the original's text format; white space anywhere is ignored, as Go does.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = STANDARD.decode(compact.as_bytes())?;
        let keypair = Keypair::from_protobuf_encoding(&bytes)?;
        Ok(Self { keypair, text: compact })
    }

    /// Loads the key in `path`, or creates one there (mode 0600) when there is no file.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let file_err = |source| KeyError::File { path: path.display().to_string(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_text(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private(path, &key.text).map_err(file_err)?;
                Ok(key)
            }
            Err(e) => Err(file_err(e)),
        }
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_keeps_the_peer_id() {
        let key = NodeKey::generate();
        let again = NodeKey::from_text(&format!("{}\n", key.text)).unwrap();
        assert_eq!(again.keypair.public().to_peer_id(), key.keypair.public().to_peer_id());
        assert_eq!(again.text, key.text);
        assert!(NodeKey::from_text("not base64!").is_err());
        assert!(NodeKey::from_text("AAAA").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("l2pws-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.key");
        let _ = std::fs::remove_file(&path);
        let first = NodeKey::load_or_create(&path).unwrap();
        let second = NodeKey::load_or_create(&path).unwrap();
        assert_eq!(first.text, second.text);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
