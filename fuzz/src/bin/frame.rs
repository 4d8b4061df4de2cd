//! Arbitrary bytes as one whole frame (length prefix + payload) of several message kinds.
fn main() {
    afl::fuzz!(|data: &[u8]| deskside_fuzz::decode_frames(data));
}
