//! What happened, for the front ends that show it live (the web console): agents coming
//! and going, and tickets whose timeline grew. Nobody listening costs nothing; a listener
//! that falls behind misses events and reloads what it shows.

use tokio::sync::broadcast;

/// Events kept for a slow listener before the oldest are dropped for it.
const BACKLOG: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AgentOnline(String),
    AgentOffline(String),
    /// The ticket's timeline or evidence changed.
    Ticket(u64),
}

#[derive(Debug)]
pub struct Events(broadcast::Sender<Event>);

impl Default for Events {
    fn default() -> Events {
        Events(broadcast::channel(BACKLOG).0)
    }
}

impl Events {
    pub fn send(&self, event: Event) {
        // No receiver is not an error: nobody is watching.
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}
