//! A SHA-256 digest field in serde: hex text in JSON (like every other digest Deskside
//! shows), the 32 raw bytes in the wire codec. Use with `#[serde(with = "crate::digest")]`.
//!
//! Reading JSON also accepts the array of 32 numbers that earlier versions wrote, so
//! catalog entries stored before keep loading.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a SHA-256 digest in bytes.
pub const SHA256_BYTES: usize = 32;

/// Whether `name` is a SHA-256 digest as Deskside writes it: exactly 64 **lowercase**
/// hex digits (`hex::encode`). Blob file names, bundle item names and the `sha256` of
/// every evidence row take this form, and comparisons between them are byte-exact, so
/// an uppercase name is not the same item and is refused rather than folded.
pub fn is_sha256_hex(name: &str) -> bool {
    name.len() == 2 * SHA256_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn serialize<S: Serializer>(digest: &[u8; SHA256_BYTES], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&hex::encode(digest))
    } else {
        digest.serialize(s)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; SHA256_BYTES], D::Error> {
    if !d.is_human_readable() {
        return <[u8; SHA256_BYTES]>::deserialize(d);
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Hex(String),
        Bytes([u8; SHA256_BYTES]),
    }
    match Text::deserialize(d).map_err(|_| {
        D::Error::custom("a SHA-256 digest must be 64 hex digits (or an array of 32 bytes)")
    })? {
        Text::Bytes(b) => Ok(b),
        Text::Hex(h) => {
            let mut out = [0u8; SHA256_BYTES];
            hex::decode_to_slice(&h, &mut out).map_err(|e| {
                D::Error::custom(format!(
                    "a SHA-256 digest must be 64 hex digits: {e} in {:?}",
                    h.chars().take(80).collect::<String>()
                ))
            })?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        sum: [u8; 32],
    }

    impl crate::Message for Holder {
        const KIND: &'static str = "digest";
        const MAX_BYTES: u32 = 64;
    }

    const SUM: [u8; 32] = [
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22,
        0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00,
        0x15, 0xad,
    ];
    const SUM_HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn a_sha256_name_is_64_lowercase_hex_digits() {
        assert!(super::is_sha256_hex(SUM_HEX));
        assert!(!super::is_sha256_hex(&SUM_HEX.to_uppercase()));
        assert!(!super::is_sha256_hex(&SUM_HEX[..63]));
        assert!(!super::is_sha256_hex(&format!("{SUM_HEX}0")));
        assert!(!super::is_sha256_hex(&SUM_HEX.replace('b', "g")));
        assert!(!super::is_sha256_hex(&format!("../{}", &SUM_HEX[3..])));
        assert!(!super::is_sha256_hex(""));
    }

    #[test]
    fn json_shows_hex_and_reads_it_back() -> Result<(), serde_json::Error> {
        let json = serde_json::to_string(&Holder { sum: SUM })?;
        assert_eq!(json, format!("{{\"sum\":\"{SUM_HEX}\"}}"));
        assert_eq!(serde_json::from_str::<Holder>(&json)?, Holder { sum: SUM });
        Ok(())
    }

    #[test]
    fn json_written_as_an_array_still_reads() -> Result<(), serde_json::Error> {
        let old = serde_json::json!({ "sum": SUM.to_vec() }).to_string();
        assert_eq!(serde_json::from_str::<Holder>(&old)?, Holder { sum: SUM });
        Ok(())
    }

    #[test]
    fn bad_digests_are_refused_with_the_reason() {
        for bad in [
            "\"abc\"".to_owned(),
            format!("\"{}\"", "zz".repeat(32)),
            format!("\"{SUM_HEX}00\""),
            "[1, 2, 3]".to_owned(),
            "17".to_owned(),
        ] {
            let err = serde_json::from_str::<Holder>(&format!("{{\"sum\":{bad}}}"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("64 hex digits"), "{bad}: {err:?}");
        }
    }

    #[test]
    fn the_wire_codec_keeps_raw_bytes() -> Result<(), Box<dyn std::error::Error>> {
        // What the codec wrote before this helper existed: the 32 bytes, no text.
        #[derive(Serialize, Deserialize)]
        struct Plain {
            sum: [u8; 32],
        }
        impl crate::Message for Plain {
            const KIND: &'static str = "plain digest";
            const MAX_BYTES: u32 = 64;
        }
        let with_helper = crate::encode(&Holder { sum: SUM })?;
        let plain = crate::encode(&Plain { sum: SUM })?;
        assert_eq!(with_helper, plain);
        assert_eq!(with_helper.len(), 32);
        assert_eq!(crate::decode::<Holder>(&plain)?, Holder { sum: SUM });
        Ok(())
    }
}
