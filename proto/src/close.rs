//! Application close codes: why a connection or stream was closed, as numbers a peer can
//! turn back into words. The reason text travels with the code.

/// Normal end of a conversation.
pub const DONE: u32 = 0;
/// Protocol versions differ; the reason names both.
pub const VERSION_MISMATCH: u32 = 1;
/// A frame was over its limit, truncated, malformed or had trailing bytes.
pub const BAD_FRAME: u32 = 2;
/// The peer has no certificate and asked for something other than enrollment.
pub const CERTIFICATE_REQUIRED: u32 = 3;
/// The certificate's identity is unknown to the controller or revoked.
pub const UNKNOWN_IDENTITY: u32 = 4;
/// The peer did something out of order, e.g. a request before the hello.
pub const PROTOCOL_VIOLATION: u32 = 5;
/// The peer was too slow to send a complete message.
pub const TIMED_OUT: u32 = 6;
/// Too many connections or streams.
pub const BUSY: u32 = 7;
/// The controller or agent is shutting down.
pub const SHUTDOWN: u32 = 8;
/// A newer connection for the same agent replaced this one.
pub const REPLACED: u32 = 9;
/// A bulk transfer (a collected file) was abandoned part-way: the sender could not read
/// on, or the receiver refused what it was sent. Only that stream is lost.
pub const TRANSFER_ABORTED: u32 = 10;

/// A short name for a close code, for error messages.
pub fn describe(code: u64) -> &'static str {
    match code {
        0 => "done",
        1 => "protocol version mismatch",
        2 => "bad frame",
        3 => "client certificate required",
        4 => "unknown or revoked identity",
        5 => "protocol violation",
        6 => "timed out",
        7 => "busy",
        8 => "shutting down",
        9 => "replaced by a newer connection",
        10 => "transfer aborted",
        _ => "unknown reason",
    }
}
