//! The few libc calls diagnostics and the allocator need (affinity, statvfs, adjtimex,
//! getifaddrs, malloc_trim, mallopt), each behind a safe function.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// getifaddrs lists one node per address plus one per link; a machine with more than this
/// many is not one we can describe usefully, and the cap keeps a corrupt list from looping.
const MAX_IFADDRS_NODES: usize = 16_384;

/// glibc malloc arenas the agent may use. By default glibc adds an arena per thread that
/// allocates, up to 8 per core, and memory freed in an arena stays resident. The agent's
/// threads are mostly asleep, and a snapshot's probe threads come and go: two arenas
/// leave them no real contention and keep a snapshot from leaving a dozen heaps behind.
#[cfg(target_env = "gnu")]
const MALLOC_ARENAS: libc::c_int = 2;

/// Caps glibc at `MALLOC_ARENAS` arenas; must run before any thread exists.
#[cfg(target_env = "gnu")]
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator tunable and is called before any other thread
    // exists; a refusal (0) leaves glibc's default, which is only less frugal.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

#[cfg(not(target_env = "gnu"))]
pub fn limit_malloc_arenas() {}

/// Hands the allocator's free memory back to the kernel (`malloc_trim(0)`). glibc keeps
/// freed blocks mapped in every arena, so a snapshot's temporaries (the process table,
/// command output, sysinfo's buffers) would otherwise stay resident while the agent idles
/// for hours. On an agent-sized heap (a few MiB) it takes well under a millisecond.
#[cfg(target_env = "gnu")]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory on their own.
#[cfg(not(target_env = "gnu"))]
pub fn release_free_memory() {}

/// Logical CPUs the calling thread may run on: what `nproc` prints (`sched_getaffinity`).
pub(crate) fn affinity_cpu_count() -> io::Result<u32> {
    // SAFETY: `cpu_set_t` is a plain bit array, for which all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 means the calling thread; the size passed is the real size of `set`,
    // which the kernel writes at most that many bytes into.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `set` is initialised (zeroed, then filled by the kernel).
    let count = unsafe { libc::CPU_COUNT(&set) };
    u32::try_from(count).map_err(|_| io::Error::other("negative CPU count"))
}

/// What `statvfs(3)` says about one mounted filesystem, sizes already in bytes.
/// CPUs this process may run on (what `nproc` prints).
pub fn available_cpus() -> Result<u32, crate::os::Error> {
    affinity_cpu_count().map_err(|e| crate::os::Error::system("sched_getaffinity", e))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsUsage {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub available_bytes: u64,
    pub blocks: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    /// `ST_RDONLY` in `f_flag`.
    pub read_only: bool,
}

/// `statvfs(path)`, with block counts multiplied out the way `df` does (`f_frsize`, or
/// `f_bsize` where a filesystem leaves `f_frsize` at 0).
pub(crate) fn statvfs(path: &Path) -> io::Result<FsUsage> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut buf = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `buf` is writable storage of
    // the type statvfs fills in.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `buf`.
    let st = unsafe { buf.assume_init() };
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let (frsize, bsize) = (u64::from(st.f_frsize), u64::from(st.f_bsize));
    let unit = if frsize == 0 { bsize } else { frsize };
    #[allow(clippy::useless_conversion)]
    let (blocks, bfree, bavail) = (
        u64::from(st.f_blocks),
        u64::from(st.f_bfree),
        u64::from(st.f_bavail),
    );
    #[allow(clippy::useless_conversion)]
    let (files, ffree) = (u64::from(st.f_files), u64::from(st.f_ffree));
    Ok(FsUsage {
        total_bytes: blocks.saturating_mul(unit),
        free_bytes: bfree.saturating_mul(unit),
        available_bytes: bavail.saturating_mul(unit),
        blocks,
        inodes_total: files,
        inodes_free: ffree,
        read_only: st.f_flag & libc::ST_RDONLY != 0,
    })
}

/// The kernel clock discipline as `adjtimex(2)` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    /// `STA_UNSYNC` is clear: an NTP daemon has told the kernel the clock is disciplined.
    pub synchronized: bool,
    /// `maxerror`, microseconds.
    pub max_error_us: i64,
}

/// Reads (never changes) the kernel clock state: `adjtimex` with `modes = 0`.
pub(crate) fn clock_state() -> io::Result<ClockState> {
    // SAFETY: `timex` is plain integers and padding; all-zero is valid, and `modes = 0`
    // asks the kernel to read only.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, writable `timex` for the duration of the call.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)] // `c_long` is i32 on 32-bit targets
    let max_error_us = i64::from(tx.maxerror);
    Ok(ClockState {
        synchronized: tx.status & libc::STA_UNSYNC == 0,
        max_error_us,
    })
}

/// One address of one interface, as `getifaddrs(3)` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceAddress {
    /// Interface name, or the IPv4 label (`eth0:1`) where the address has one.
    pub name: String,
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Frees a getifaddrs list when dropped, whatever path the walk takes.
struct IfAddrsList(*mut libc::ifaddrs);

impl Drop for IfAddrsList {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a successful getifaddrs and is freed only here.
            unsafe { libc::freeifaddrs(self.0) };
        }
    }
}

/// Every IPv4/IPv6 address on every interface, in the order the kernel dumps them.
pub(crate) fn interface_addresses() -> io::Result<Vec<InterfaceAddress>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs stores a list it allocated into `head`; `IfAddrsList` frees it.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let list = IfAddrsList(head);
    let mut out = Vec::new();
    let mut node = list.0;
    let mut visited = 0usize;
    while !node.is_null() && visited < MAX_IFADDRS_NODES {
        visited += 1;
        // SAFETY: `node` is a non-null element of the list, which lives as long as `list`.
        let ifa = unsafe { &*node };
        node = ifa.ifa_next;
        if ifa.ifa_name.is_null() {
            continue;
        }
        let Some(addr) = sockaddr_ip(ifa.ifa_addr) else {
            continue;
        };
        // SAFETY: `ifa_name` is a non-null, NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let full = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match sockaddr_ip(ifa.ifa_netmask) {
            Some(IpAddr::V4(mask)) => u8::try_from(u32::from(mask).count_ones()).unwrap_or(full),
            Some(IpAddr::V6(mask)) => u8::try_from(u128::from(mask).count_ones()).unwrap_or(full),
            None => full,
        };
        out.push(InterfaceAddress { name, addr, prefix });
    }
    Ok(out)
}

/// The IP address in a `sockaddr` from getifaddrs, if it is IPv4 or IPv6.
fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: `sa` is non-null and points into the getifaddrs list; every sockaddr variant
    // starts with the family field. read_unaligned makes no alignment assumption.
    let family = unsafe { std::ptr::addr_of!((*sa).sa_family).read_unaligned() };
    match libc::c_int::from(family) {
        libc::AF_INET => {
            // SAFETY: family AF_INET means glibc allocated a full `sockaddr_in` here.
            let sin = unsafe { sa.cast::<libc::sockaddr_in>().read_unaligned() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: family AF_INET6 means glibc allocated a full `sockaddr_in6` here.
            let sin6 = unsafe { sa.cast::<libc::sockaddr_in6>().read_unaligned() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_is_at_least_one_cpu() {
        assert!(affinity_cpu_count().is_ok_and(|n| n >= 1));
    }

    #[test]
    fn statvfs_of_root_has_blocks() {
        let usage = statvfs(Path::new("/"));
        assert!(usage.is_ok_and(|u| u.total_bytes > 0 && u.available_bytes <= u.total_bytes));
    }

    #[test]
    fn statvfs_of_missing_path_is_an_error() {
        assert!(statvfs(Path::new("/nonexistent/deskside/path")).is_err());
    }

    #[test]
    fn loopback_has_an_address() {
        let addrs = interface_addresses().unwrap_or_default();
        assert!(addrs.iter().any(|a| a.addr.is_loopback()));
    }
}
