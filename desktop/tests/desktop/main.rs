//! The desktop helper end to end, one test binary: a private session bus (and an X
//! server for the window) per test, a real controller and agent, the real binaries.

mod bus;
mod consent;
mod screen;
mod window;
mod window_l0;
