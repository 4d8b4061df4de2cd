//! Linux: /proc, /sys, /etc, utmp, systemd-logind, libc calls, and the distribution's
//! tools (systemctl, journalctl, dmesg, apt-get, needs-restarting, zypper). What is
//! re-exported here is the whole of what the rest of the agent may ask of the OS.

mod command;
mod disks;
mod files;
mod host;
mod kernels;
mod logs;
mod mounts;
mod net;
mod packages;
mod passwd;
mod peer;
mod process;
mod reboot;
mod routes;
mod sessions;
mod sys;
mod utmp;

pub use disks::disks;
pub use host::{
    OsRelease, clock, hostname, kernel_release, memory, os_release, timezone, uptime_secs,
};
pub use logs::{failed_units, journal_errors, kernel_errors};
pub use net::interfaces;
pub use packages::{COUNTING_UPDATES, PackageState, PendingUpdates, pending_updates};
pub use passwd::{Account, accounts, user_name};
pub use peer::peer_uid;
pub use process::{effective_uid, kill_group, lower_group_priority};
pub use reboot::{RebootRequired, reboot_required};
pub use routes::{Resolver, default_routes, resolver};
pub use sessions::SessionRecords;
pub use sys::{ClockState, available_cpus, limit_malloc_arenas, release_free_memory};
pub use utmp::{logged_in_users, user_process_record};

pub(crate) use passwd::{accounts_in, name_of};
