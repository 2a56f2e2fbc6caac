//! Who and where this process is: `user@host` for records other users read (the stack lock,
//! deploy revisions), this machine's identity, and whether a process here still lives.

/// The user running wsm: the password database's name for the effective uid, else `$USER`.
pub fn user_name() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; read at once.
    let from_passwd = unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr((*pw).pw_name)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    from_passwd
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// This machine's host name.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".into()
    }
}

/// `user@host`, as records name who did something.
pub fn user_at_host() -> String {
    format!("{}@{}", user_name(), host_name())
}

/// This machine's identity, so that a lock held here by a process that is gone can be broken:
/// `WSM_MACHINE_ID` (for containers that share one /etc/machine-id, and for tests that play
/// another machine), else /etc/machine-id, else the host name.
pub fn machine_id() -> String {
    std::env::var("WSM_MACHINE_ID")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/machine-id")
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(host_name)
}

/// Whether process `pid` exists on this machine.
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks whether the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH))
}

/// This process as the kernel knows it, so a lock can say whether its holder is provably gone:
/// `<boot id>/<pid namespace>/<pid>/<start time>`, "" where /proc cannot tell. Two processes
/// with one machine id (cloned VMs, containers) differ in boot id or pid namespace.
pub fn process_identity() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let pid = std::process::id();
    match (boot.trim(), namespace.as_str(), start_time(pid)) {
        ("", _, _) | (_, "", _) | (_, _, None) => String::new(),
        (boot, namespace, Some(start)) => format!("{boot}/{namespace}/{pid}/{start}"),
    }
}

/// When process `pid` started, in clock ticks after boot (`/proc/<pid>/stat`, field 22).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `identity` names (see [`process_identity`]) is provably gone: it ran
/// in this boot and pid namespace, and no process of that pid and start time is left. A
/// process elsewhere, or an identity that does not parse, is never called gone.
pub fn process_gone(identity: &str) -> bool {
    let mine = process_identity();
    let (theirs, ours) = (identity.rsplitn(3, '/'), mine.rsplitn(3, '/'));
    let (theirs, ours): (Vec<&str>, Vec<&str>) = (theirs.collect(), ours.collect());
    let [start, pid, place] = theirs[..] else {
        return false;
    };
    if ours.len() != 3 || ours[2] != place || place.is_empty() {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    !process_alive(pid) || start_time(pid).is_some_and(|s| s.to_string() != start)
}
