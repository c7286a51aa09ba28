//! Keeping the shim and its Python worker on one CPU.
//!
//! Lifecycle, beside the data path. A shim that serves one request at a
//! time and its worker take turns: while one works the other waits. Left to
//! itself, the scheduler wakes each of them on whichever CPU is idle, so
//! that every hand-off (the request to the worker, its answer back) wakes a
//! task on another CPU. In a VM that costs tens of microseconds where a
//! wake-up on the same CPU costs one: a pipe round trip between two
//! processes took 62 µs across two CPUs and 1.9 µs on one (the benchmark's
//! 2-vCPU VM), and a worker that changes CPU with its shim works with cold
//! caches (a Django view took 30% more CPU so). Nothing is lost by sharing
//! the CPU: the two never run at once.
//!
//! So before a request the shim binds itself and its worker to the CPU it
//! is running on. The binding lasts a second at most: then the shim lets go
//! of it, the scheduler places the shim where it sees fit when the next
//! connection wakes it, and the next request binds the pair there. The pair
//! thus moves with the load of the machine, as the scheduler would move it,
//! only in steps of a second.
//!
//! Off in site.toml with `pin_cpu = false`, in CGI mode (one request), for
//! runfcgi's threaded worker (its requests run at once), and where the
//! process may use one CPU only.

use std::time::{Duration, Instant};

/// How long the pair stays on one CPU before the scheduler may move it.
const RE_PLACE: Duration = Duration::from_secs(1);

pub struct Pair {
    /// The CPUs this process may use when not bound (taskset, cpusets).
    allowed: libc::cpu_set_t,
    /// The CPU the shim is bound to, and since when.
    bound: Option<(usize, Instant)>,
    /// The worker bound, and to which CPU.
    worker: Option<(libc::pid_t, usize)>,
    enabled: bool,
}

fn one_cpu(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside the set; callers pass cpu < CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

fn bind(pid: libc::pid_t, set: &libc::cpu_set_t) -> bool {
    // SAFETY: set is a valid cpu_set_t of the size given.
    unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

impl Pair {
    pub fn new(enabled: bool) -> Pair {
        // SAFETY: an all-zero cpu_set_t is a valid out-parameter.
        let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: allowed is a cpu_set_t of the size given.
        let ok = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed)
        } == 0;
        // SAFETY: CPU_COUNT reads the set.
        let several = ok && unsafe { libc::CPU_COUNT(&allowed) } > 1;
        Pair {
            allowed,
            bound: None,
            worker: None,
            enabled: enabled && several,
        }
    }

    /// Before a request goes to the worker `pid`: the shim and the worker
    /// on the CPU the shim runs on (already so, nearly always).
    pub fn place(&mut self, pid: libc::pid_t) {
        if !self.enabled {
            return;
        }
        let cpu = match self.bound {
            Some((cpu, _)) => cpu,
            None => {
                // SAFETY: sched_getcpu has no memory effects (musl: the vDSO).
                let Ok(cpu) = usize::try_from(unsafe { libc::sched_getcpu() }) else {
                    return;
                };
                if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() || !bind(0, &one_cpu(cpu)) {
                    // Past CPU_SETSIZE, or a cpuset that changed under us:
                    // placement stays the scheduler's.
                    self.enabled = false;
                    return;
                }
                self.bound = Some((cpu, Instant::now()));
                cpu
            }
        };
        if self.worker != Some((pid, cpu)) {
            if bind(pid, &one_cpu(cpu)) {
                self.worker = Some((pid, cpu));
            } else {
                self.enabled = false;
                self.release();
            }
        }
    }

    /// Are the shim and the worker `pid` on one CPU now?
    pub fn holds(&self, pid: libc::pid_t) -> bool {
        self.bound.is_some() && self.worker.is_some_and(|(p, _)| p == pid)
    }

    /// Between requests, and while idle: a binding older than [`RE_PLACE`]
    /// is let go (the worker stays where it is until the next `place`).
    pub fn review(&mut self) {
        if self
            .bound
            .is_some_and(|(_, since)| since.elapsed() >= RE_PLACE)
        {
            self.release();
        }
    }

    fn release(&mut self) {
        if self.bound.take().is_some() {
            // Dropped: binding to what the process was allowed before
            // cannot fail, and if it did the shim would only stay put.
            let _ = bind(0, &self.allowed);
        }
    }
}
