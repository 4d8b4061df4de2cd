//! The Deskside desktop helper: runs in the user's graphical session, watches the agent's
//! control socket, and asks the user through desktop notifications whether a technician
//! may help; it shows a running session and lets the user end it. It holds no keys and
//! decides nothing: the agent does, from the user's answer.

pub mod helper;
pub mod notify;
pub mod texts;
#[cfg(feature = "window")]
pub mod window;
