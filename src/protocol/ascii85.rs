//! Ascii85 exactly as Go's `encoding/ascii85` (and Python's `base64.a85encode`) speak it:
//! Adobe's alphabet `!`..`u`, `z` for an all-zero 4-byte group, no `<~ ~>` delimiters.
//!
//! No crate on the registry implements this variant (see `RUST-LIBP2P-NOTES.md`), so the
//! codec lives here. Decoding follows Go's rules: bytes up to and including space are
//! skipped, `z` is only valid at the start of a group, a lone trailing character is an
//! error, and an out-of-range group wraps as Go's `uint32` arithmetic does.

use thiserror::Error;

/// Why a text is not Ascii85.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Ascii85Error {
    /// A character outside `!`..`u` and `z`, or a `z` inside a group.
    #[error("invalid Ascii85 character {byte:#04x} at offset {offset}")]
    InvalidByte { offset: usize, byte: u8 },
    /// The text ends with a single character of a group, which carries no byte.
    #[error("Ascii85 text ends with a lone character")]
    LoneTrailingChar,
}

/// Encodes `src` as Go's `ascii85.Encode` does.
pub fn encode(src: &[u8]) -> String {
    let mut out = String::with_capacity(src.len().div_ceil(4) * 5);
    for chunk in src.chunks(4) {
        let mut group = [0u8; 4];
        group[..chunk.len()].copy_from_slice(chunk);
        let mut value = u32::from_be_bytes(group);
        if chunk.len() == 4 && value == 0 {
            out.push('z');
            continue;
        }
        let mut digits = [0u8; 5];
        for digit in digits.iter_mut().rev() {
            *digit = b'!' + (value % 85) as u8;
            value /= 85;
        }
        for &d in &digits[..chunk.len() + 1] {
            out.push(d as char);
        }
    }
    out
}

/// Decodes `src` as Go's `ascii85.Decode` with `flush` set does.
pub fn decode(src: &[u8]) -> Result<Vec<u8>, Ascii85Error> {
    let mut out = Vec::with_capacity(src.len() / 5 * 4 + 4);
    let mut value: u32 = 0;
    let mut count = 0;
    for (offset, &byte) in src.iter().enumerate() {
        match byte {
            0..=b' ' => continue,
            b'z' if count == 0 => {
                out.extend_from_slice(&[0; 4]);
                continue;
            }
            b'!'..=b'u' => {
                value = value.wrapping_mul(85).wrapping_add(u32::from(byte - b'!'));
                count += 1;
            }
            _ => return Err(Ascii85Error::InvalidByte { offset, byte }),
        }
        if count == 5 {
            out.extend_from_slice(&value.to_be_bytes());
            value = 0;
            count = 0;
        }
    }
    match count {
        0 => {}
        1 => return Err(Ascii85Error::LoneTrailingChar),
        _ => {
            // A short group was truncated: pad with the highest digit so the kept
            // top bytes come out right, then keep `count - 1` bytes.
            for _ in count..5 {
                value = value.wrapping_mul(85).wrapping_add(84);
            }
            out.extend_from_slice(&value.to_be_bytes()[..count - 1]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(&[0, 0, 0, 0]), "z");
        assert_eq!(encode(&[0, 0]), "!!!");
        assert_eq!(encode(b"Man "), "9jqo^");
        assert_eq!(decode(b"9jqo^").unwrap(), b"Man ");
        assert_eq!(decode(b" z\n!!!").unwrap(), vec![0, 0, 0, 0, 0, 0]);
        assert_eq!(decode(b"9jqo^B").unwrap_err(), Ascii85Error::LoneTrailingChar);
        assert_eq!(
            decode(b"9jzqo").unwrap_err(),
            Ascii85Error::InvalidByte { offset: 2, byte: b'z' }
        );
        assert!(matches!(decode(b"~>"), Err(Ascii85Error::InvalidByte { offset: 0, .. })));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(decode(encode(&bytes).as_bytes()).unwrap(), bytes);
        }

        #[test]
        fn arbitrary_text_never_panics(text in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&text);
        }
    }
}
