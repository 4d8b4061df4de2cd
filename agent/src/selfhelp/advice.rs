//! What the user can do about each finding, in plain words: one text per finding code,
//! all in this file so they can be translated together. Where a self-service script
//! fixes it, [`advice`] names the script.

/// Advice for one finding code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advice {
    pub text: &'static str,
    /// A self-service script that fixes it, when the machine has that script.
    pub fix: Option<&'static str>,
}

const fn say(text: &'static str) -> Advice {
    Advice { text, fix: None }
}

const fn fix(text: &'static str, script: &'static str) -> Advice {
    Advice {
        text,
        fix: Some(script),
    }
}

/// For a finding nobody wrote advice for yet.
pub const UNKNOWN: Advice =
    say("Your help desk can look into this; ask for help and the details go with your request.");

/// The advice for finding `code` (see `deskside_proto::findings`).
pub fn advice(code: &str) -> Advice {
    match code {
        "disk.nearly_full" => say(
            "Delete or move large files you no longer need (Downloads, videos, old installers) and empty the trash. If it stays full, ask for help.",
        ),
        "disk.inodes_low" => say(
            "The disk holds too many small files. Empty the trash and delete old downloads; if that does not help, ask for help.",
        ),
        "disk.root_read_only" => say(
            "The system disk is read-only, often after a disk error. Save your work elsewhere and ask for help now.",
        ),
        "memory.low" => say(
            "Close programs and browser tabs you are not using. If the computer stays slow, restart it.",
        ),
        "swap.pressure" | "swap.none" => say(
            "The computer is short of memory. Close programs you are not using; if it happens often, ask for help.",
        ),
        "cpu.high_load" | "process.runaway" => say(
            "A program is keeping the computer busy. Close the program named, or restart the computer if you cannot.",
        ),
        "process.memory_hog" => say(
            "A program uses a lot of memory. Save your work in it and close it, then open it again.",
        ),
        "host.long_uptime" => say(
            "The computer has not restarted in a long time. Save your work and restart it; that clears many problems.",
        ),
        "updates.pending" => say(
            "Updates are waiting. Install them when it suits you, or ask your help desk when they will be installed.",
        ),
        "updates.reboot_required" => {
            say("An update needs a restart to finish. Save your work and restart the computer.")
        }
        "network.no_default_route" | "network.no_interface_up" => fix(
            "The computer is not connected to a network. Check the cable or Wi-Fi; for the details your help desk needs, run the network-info fix.",
            "network-info",
        ),
        "network.no_dns_resolver" => fix(
            "Names on the internet cannot be looked up. Reconnect to the network; clearing the name cache with the flush-dns fix can help.",
            "flush-dns",
        ),
        "network.interface_errors" => say(
            "The network connection has errors. Try another cable or move closer to the Wi-Fi access point.",
        ),
        "time.unsynchronised" | "time.controller_offset" => say(
            "The computer's clock is off, which breaks sign-ins and secure websites. Ask for help if it does not correct itself.",
        ),
        "services.failed" => say(
            "A system service has stopped. Restarting the computer often fixes it; if not, ask for help.",
        ),
        "log.oom_kills" => say(
            "Programs were closed because memory ran out. Keep fewer programs open at once; ask for help if it happens again.",
        ),
        "log.kernel_errors" => {
            say("The system logged hardware or driver errors. Save your work and ask for help.")
        }
        "temperature.high" => say(
            "The computer is running hot. Make sure its vents are free and it is not on a soft surface.",
        ),
        "probes.failed" => say(
            "Some checks could not run. This alone is not a problem; your help desk sees which ones if you ask for help.",
        ),
        _ => UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finding_the_rules_can_raise_has_its_own_advice() {
        // The codes the rules in deskside_proto::findings raise today.
        for code in [
            "cpu.high_load",
            "disk.inodes_low",
            "disk.nearly_full",
            "disk.root_read_only",
            "host.long_uptime",
            "log.kernel_errors",
            "log.oom_kills",
            "memory.low",
            "network.interface_errors",
            "network.no_default_route",
            "network.no_dns_resolver",
            "network.no_interface_up",
            "probes.failed",
            "process.memory_hog",
            "process.runaway",
            "services.failed",
            "swap.none",
            "swap.pressure",
            "temperature.high",
            "time.controller_offset",
            "time.unsynchronised",
            "updates.pending",
            "updates.reboot_required",
        ] {
            assert_ne!(advice(code), UNKNOWN, "{code}");
        }
        assert_eq!(advice("something.new"), UNKNOWN);
        assert_eq!(advice("network.no_dns_resolver").fix, Some("flush-dns"));
    }
}
