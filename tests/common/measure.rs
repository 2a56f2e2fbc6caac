//! A child process measured as the kernel saw it: how it ended, its peak memory and CPU time
//! (`wait4`'s rusage), for tests that bound what wsm takes.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Run;

/// A finished child: how it ended, and its peak resident memory in KiB.
pub struct Finished {
    pub run: Run,
    pub max_rss_kib: i64,
    pub took: Duration,
    /// User and system CPU seconds.
    pub cpu: f64,
}

/// Runs `cmd` with stdin closed (no terminal) and reads its peak memory from `wait4`.
// The child is reaped by `wait4`, which `Child::wait` cannot replace: it gives the rusage.
#[allow(clippy::zombie_processes)]
pub fn run_measured(mut cmd: Command) -> Finished {
    let started = Instant::now();
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsm");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = out.read_to_string(&mut stdout);
    let stderr = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: plain libc call on our own child; rusage is written by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Finished {
        run: Run {
            code,
            stdout,
            stderr,
        },
        max_rss_kib: usage.ru_maxrss,
        took: started.elapsed(),
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
    }
}
