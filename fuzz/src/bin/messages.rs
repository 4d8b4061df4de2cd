//! The first byte picks the message type (`deskside_fuzz::KINDS`), the rest is decoded.
fn main() {
    afl::fuzz!(
        |data: &[u8]| if let Some((&kind, bytes)) = data.split_first() {
            deskside_fuzz::decode_message(kind, bytes)
        }
    );
}
