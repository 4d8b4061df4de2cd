//! What the fuzz targets and the seed generator share: which selector byte picks which
//! message type, and the checks run on every decode.
//!
//! A decode may fail, never panic; a value that decodes must encode again, and that
//! encoding must be a fixed point (decode then encode gives the same bytes).

use deskside_proto::frame::{HEADER_LEN, decode_frame, encode_frame, payload_len};
use deskside_proto::msg::agent::{Delivery, AgentReply, AgentRequest, CheckIn, NoticeAck};
use deskside_proto::msg::enroll::{EnrollReply, EnrollRequest, EnrollToken};
use deskside_proto::msg::hello::{Hello, HelloReply};
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_proto::{Message, decode, encode};

/// Message types in selector order: the first byte of a `messages` input, modulo the
/// length, picks one. Append only, so existing seeds keep their meaning.
pub const KINDS: [&str; 12] = [
    Hello::KIND,
    HelloReply::KIND,
    EnrollToken::KIND,
    EnrollRequest::KIND,
    EnrollReply::KIND,
    CheckIn::KIND,
    AgentRequest::KIND,
    AgentReply::KIND,
    Delivery::KIND,
    NoticeAck::KIND,
    TechRequest::KIND,
    TechReply::KIND,
];

/// Decodes `bytes` as the message type `selector` picks (see [`KINDS`]).
pub fn decode_message(selector: u8, bytes: &[u8]) {
    match usize::from(selector) % KINDS.len() {
        0 => check::<Hello>(bytes),
        1 => check::<HelloReply>(bytes),
        2 => check::<EnrollToken>(bytes),
        3 => check::<EnrollRequest>(bytes),
        4 => check::<EnrollReply>(bytes),
        5 => check::<CheckIn>(bytes),
        6 => check::<AgentRequest>(bytes),
        7 => check::<AgentReply>(bytes),
        8 => check::<Delivery>(bytes),
        9 => check::<NoticeAck>(bytes),
        10 => check::<TechRequest>(bytes),
        _ => check::<TechReply>(bytes),
    }
}

/// Decodes `frame` as a whole frame of the kinds a peer most often sends us: the
/// unauthenticated first messages and the two largest, most nested ones.
pub fn decode_frames(frame: &[u8]) {
    check_frame::<Hello>(frame);
    check_frame::<EnrollRequest>(frame);
    check_frame::<TechRequest>(frame);
    check_frame::<AgentReply>(frame);
    check_frame::<TechReply>(frame);
}

fn check<M: Message>(bytes: &[u8]) {
    if let Ok(msg) = decode::<M>(bytes) {
        let again = encode(&msg).expect("a decoded message re-encodes within its limit");
        let back = decode::<M>(&again).expect("a re-encoded message decodes");
        let fixed = encode(&back).expect("a re-decoded message re-encodes");
        assert_eq!(again, fixed, "{}: encoding is not a fixed point", M::KIND);
    }
}

fn check_frame<M: Message>(frame: &[u8]) {
    if let Some(header) = frame.first_chunk::<HEADER_LEN>()
        && let Ok(len) = payload_len::<M>(*header)
    {
        assert!(
            len <= M::MAX_BYTES as usize,
            "{}: limit not applied",
            M::KIND
        );
    }
    if let Ok(msg) = decode_frame::<M>(frame) {
        let again = encode_frame(&msg).expect("a decoded frame re-encodes within its limit");
        assert!(
            decode_frame::<M>(&again).is_ok(),
            "{}: re-encoded frame",
            M::KIND
        );
    }
}
