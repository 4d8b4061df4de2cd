//! A TCP proxy on 127.0.0.1 in front of a real server (RT) that, for the requests it is
//! told to, forwards the request but holds the server's reply, so the client times out
//! after the server has done the work: what a slow RT behind a proxy looks like to the
//! adapter. Everything else passes through untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{Result, anyhow};

/// Hold the replies to the next `remaining` requests whose request line starts with
/// `prefix` and contains `contains`.
#[derive(Debug, Clone)]
struct HoldRule {
    prefix: String,
    contains: String,
    remaining: usize,
}

#[derive(Debug, Default)]
struct State {
    rules: Mutex<Vec<HoldRule>>,
    /// Request lines whose replies were held.
    held: Mutex<Vec<String>>,
    stopped: AtomicBool,
}

/// The running proxy; stops accepting on drop (held connections end when the client
/// hangs up).
#[derive(Debug)]
pub struct DelayProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    addr: SocketAddr,
    state: Arc<State>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<DelayProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let s = state.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let s = s.clone();
                thread::spawn(move || {
                    let _ = relay(client, upstream, &s);
                });
            }
        });
        Ok(DelayProxy {
            url: format!("http://{addr}"),
            addr,
            state,
        })
    }

    /// Holds the reply to the next `count` requests like `POST /REST/2.0/ticket ` (a
    /// request line starting with `prefix` and containing `contains`).
    pub fn hold(&self, prefix: &str, contains: &str, count: usize) -> Result<()> {
        self.state
            .rules
            .lock()
            .map_err(|_| anyhow!("proxy state poisoned"))?
            .push(HoldRule {
                prefix: prefix.to_owned(),
                contains: contains.to_owned(),
                remaining: count,
            });
        Ok(())
    }

    /// The request lines held so far.
    pub fn held(&self) -> Result<Vec<String>> {
        Ok(self
            .state
            .held
            .lock()
            .map_err(|_| anyhow!("proxy state poisoned"))?
            .clone())
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Whether `chunk` starts a request that a rule says to hold (and uses up that rule).
fn should_hold(chunk: &[u8], state: &State) -> bool {
    let line_end = chunk
        .iter()
        .position(|b| *b == b'\r')
        .unwrap_or(chunk.len());
    let Some(line) = chunk
        .get(..line_end)
        .and_then(|l| std::str::from_utf8(l).ok())
    else {
        return false;
    };
    let Ok(mut rules) = state.rules.lock() else {
        return false;
    };
    let Some(rule) = rules
        .iter_mut()
        .find(|r| r.remaining > 0 && line.starts_with(&r.prefix) && line.contains(&r.contains))
    else {
        return false;
    };
    rule.remaining -= 1;
    if let Ok(mut held) = state.held.lock() {
        held.push(line.to_owned());
    }
    true
}

fn relay(client: TcpStream, upstream: SocketAddr, state: &Arc<State>) -> Result<()> {
    let server = TcpStream::connect(upstream)?;
    let held = Arc::new(AtomicBool::new(false));
    // Server → client: forwarded until this connection carries a held request, then
    // read and dropped, so the client waits until its timeout.
    let (mut from_server, mut to_client) = (server.try_clone()?, client.try_clone()?);
    let h = held.clone();
    let back = thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from_server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if h.load(Ordering::SeqCst) {
                        continue;
                    }
                    if to_client
                        .write_all(buf.get(..n).unwrap_or_default())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // A held reply is never delivered, not even as the server's close: the client
        // sees silence until its own timeout.
        if !h.load(Ordering::SeqCst) {
            let _ = to_client.shutdown(Shutdown::Write);
        }
    });
    // Client → server: a request line matching a rule marks the connection held
    // before its bytes reach the server.
    let (mut from_client, mut to_server) = (client, server);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from_client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                if !held.load(Ordering::SeqCst) && should_hold(chunk, state) {
                    held.store(true, Ordering::SeqCst);
                }
                if to_server.write_all(chunk).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to_server.shutdown(Shutdown::Write);
    let _ = back.join();
    Ok(())
}
