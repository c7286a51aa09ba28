//! Telling, before each request, whether the reload check must stat.
//!
//! Lifecycle, beside the data path. [`App::changed`](crate::app::App::changed)
//! compares the stamps of mysite.fcgi, site.toml and site.toml's `watch`
//! files before every request: a path walk each, about 1 µs apiece on the
//! benchmark's VM, a tenth of what the shim spends on a request. With the
//! [`Gate`] armed, a request pays one poll(2) of an inotify descriptor and
//! of the mount table that finds nothing (0.3-0.5 µs on the VMs measured),
//! and the stamps are compared only after an event that may have changed
//! one.
//!
//! The gate watches each file and every directory on its path, so that a
//! file replaced by `mv`, a directory renamed away, or a missing site.toml
//! created is an event. The watches are placed before the stamps are taken,
//! root first: a change after a watch is placed is an event, one before is
//! in the stamps. A change made before the web server sent the request was
//! queued as an event before the connection existed, so the poll after
//! accept sees it: no request is served by old code after a touch.
//!
//! inotify misses changes in some places; there the gate stays off and
//! every request stats as before:
//! - a path through a symbolic link (`current -> release-2`): the change
//!   can come from any directory on the link's target;
//! - a file system whose files can change from another machine or from
//!   below (NFS, CIFS, FUSE, 9p...): only the local ones of [`LOCAL`] count;
//! - a directory on a path missing, a directory that may not be read, or
//!   inotify refused (a user has 128 inotify instances by default): tried
//!   again every [`RETRY`].
//!
//! A mount or unmount anywhere (a folder mounted over a path sends no
//! inotify event) is seen on /proc/self/mountinfo, and the watches are
//! placed anew. Not seen: a write through mmap(2) (mtime moves with no
//! event; no editor, cp, rsync, tar or unzip writes so).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a gate that could not be armed tries again.
pub const RETRY: Duration = Duration::from_secs(5);

/// File systems whose every change is an inotify event on this machine
/// (statfs f_type, linux/magic.h): ext2/3/4, xfs, btrfs, tmpfs, f2fs, zfs.
const LOCAL: [i64; 6] = [
    0xEF53,
    0x5846_5342,
    0x9123_683E,
    0x0102_1994,
    0xF2F5_2010,
    0x2FC1_2FC1,
];

/// A directory's entries changing: a path through it may lead elsewhere.
const ENTRIES: u32 = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;

/// Events after which the watches no longer follow the paths.
const LOST: u32 = libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_IGNORED
    | libc::IN_UNMOUNT
    | libc::IN_Q_OVERFLOW;

/// For a watched file (or directory): what changes its stamp (mtime, size;
/// a directory's entries), and its watch ending.
const FILE_MASK: u32 =
    libc::IN_ATTRIB | libc::IN_MODIFY | ENTRIES | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;

/// For a directory on the way: its entries only, not every write to a file
/// in it (a web root holds logs and SQLite journals).
const WAY_MASK: u32 = ENTRIES | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;

/// Which events of one watch (one object, maybe on several paths) matter.
#[derive(Debug, Default)]
struct Interest {
    /// A watched file or directory itself: any event.
    all: bool,
    /// A directory on the way to watched files: these entries of it.
    entries: Vec<OsString>,
}

struct Armed {
    fd: OwnedFd,
    /// /proc/self/mountinfo, which polls POLLPRI after any mount or
    /// unmount: a folder mounted over (or unmounted from) a path sends no
    /// inotify event.
    mounts: OwnedFd,
    watches: Vec<(i32, Interest)>,
    /// Where events are read: room for the longest (a name of NAME_MAX).
    buf: Vec<u8>,
}

pub struct Gate {
    paths: Vec<PathBuf>,
    state: State,
    /// Stat at the next check (just armed: see the module comment).
    pending: bool,
}

enum State {
    /// Not used (CGI, one request): every check stats.
    Never,
    Armed(Armed),
    /// Could not be armed for `why`: every check stats, and the gate tries
    /// again from `retry_at`.
    Off {
        why: String,
        retry_at: Instant,
    },
}

impl Gate {
    /// A gate that is never armed: every check stats (CGI, one request).
    pub fn never() -> Gate {
        Gate {
            paths: Vec::new(),
            state: State::Never,
            pending: true,
        }
    }

    /// Watches `paths` (absolute). The next [`Self::must_check`] is true:
    /// take the stamps after this call.
    pub fn arm(&mut self, paths: Vec<PathBuf>) {
        self.paths = paths;
        self.rearm();
    }

    /// Why the gate is off (for tests and `check`); None when armed.
    pub fn off(&self) -> Option<&str> {
        match &self.state {
            State::Never => Some("not used for one request"),
            State::Armed(_) => None,
            State::Off { why, .. } => Some(why),
        }
    }

    fn rearm(&mut self) {
        self.pending = true;
        self.state = match watch_all(&self.paths) {
            Ok(a) => State::Armed(a),
            Err(why) => Gate::failed(why),
        };
    }

    /// Off for `why`, to be tried again after [`RETRY`].
    fn failed(why: String) -> State {
        State::Off {
            why,
            retry_at: Instant::now() + RETRY,
        }
    }

    /// Must the stamps be compared now? False only when the gate is armed
    /// and no event since the last check could have changed one.
    pub fn must_check(&mut self) -> bool {
        if let State::Off { retry_at, .. } = &self.state
            && Instant::now() >= *retry_at
        {
            self.rearm();
            // This check stats, after the watches: nothing left pending.
            self.pending = false;
            return true;
        }
        let State::Armed(a) = &mut self.state else {
            return true;
        };
        let mut set = [
            crate::sys::pollfd(a.fd.as_raw_fd(), libc::POLLIN),
            crate::sys::pollfd(a.mounts.as_raw_fd(), libc::POLLPRI),
        ];
        let n = crate::sys::poll_ms(&mut set, 0);
        if matches!(n, Ok(0)) {
            return std::mem::take(&mut self.pending);
        }
        // Mounts changed (or poll failed, EINTR): watch the paths anew.
        let remount = n.is_err() || set[1].revents != 0;
        let (mut check, lost) = match drain(a) {
            Ok((check, lost)) => (check, lost || remount),
            Err(e) => {
                // Not expected from inotify; the stamps stay the judge.
                self.state = Gate::failed(format!("reading inotify: {e}"));
                return true;
            }
        };
        if lost {
            self.rearm();
            check = true;
        }
        check | std::mem::take(&mut self.pending)
    }
}

/// Reads every queued event: (may a stamp have changed, must the watches
/// be placed again).
fn drain(a: &mut Armed) -> io::Result<(bool, bool)> {
    // inotify_event: i32 wd, u32 mask, u32 cookie, u32 len, then the name.
    const HEAD: usize = 16;
    let (mut check, mut lost) = (false, false);
    let buf = &mut a.buf;
    loop {
        let n = match crate::sys::read(a.fd.as_raw_fd(), buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((check, lost)),
            Err(e) => return Err(e),
        };
        let mut at = 0;
        while at + HEAD <= n {
            let word = |i: usize| {
                let b = &buf[at + 4 * i..at + 4 * i + 4];
                u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
            };
            let (wd, mask, len) = (word(0) as i32, word(1), word(3) as usize);
            let end = (at + HEAD + len).min(n);
            let raw = &buf[at + HEAD..end];
            let name = &raw[..memchr::memchr(0, raw).unwrap_or(raw.len())];
            at = end;
            if mask & LOST != 0 {
                lost = true;
                check = true;
                continue;
            }
            let Some(interest) = a.watches.iter().find(|(w, _)| *w == wd).map(|(_, i)| i) else {
                check = true; // not expected: compare the stamps
                continue;
            };
            if name.is_empty() || interest.all {
                // The watched file itself, or in a watched directory.
                check = true;
            }
            if mask & ENTRIES != 0 && interest.entries.iter().any(|x| x.as_bytes() == name) {
                // A step of a path now leads elsewhere.
                lost = true;
                check = true;
            }
            // Else another entry of a directory on the way: no reason.
        }
    }
}

/// A new inotify descriptor watching every path and the directories on
/// its way. Err: why the gate cannot be trusted for these paths.
fn watch_all(paths: &[PathBuf]) -> Result<Armed, String> {
    // SAFETY: inotify_init1 takes flags only.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EMFILE) {
            return Err(format!("inotify: {e}"));
        }
        // EMFILE is the user's limit of instances far more often than the
        // process's limit of descriptors: other sites of the same account,
        // editors and file managers each hold one.
        let max = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
            .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned());
        return Err(format!(
            "no inotify instance left: this user holds the {max} that \
             fs.inotify.max_user_instances allows, or the process has no descriptor free"
        ));
    }
    // SAFETY: a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Opened before the watches are placed: a mount after it is reported.
    let mounts = std::fs::File::open("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo (to see mounts): {e}"))?;
    let mut armed = Armed {
        fd,
        mounts: mounts.into(),
        watches: Vec::new(),
        buf: vec![0; 4096],
    };
    for path in paths {
        watch_path(&mut armed, path)?;
    }
    Ok(armed)
}

fn watch_path(a: &mut Armed, path: &Path) -> Result<(), String> {
    // Without a trailing `/` or `/.` (`watch = ["lib/"]`): with one, the
    // kernel follows a symbolic link in the last step even under
    // IN_DONT_FOLLOW, and lstat does too.
    let normal: PathBuf = path.components().collect();
    let path = normal.as_path();
    let shown = path.display();
    if !path.is_absolute() {
        return Err(format!("{shown} is relative"));
    }
    if path.file_name().is_none() {
        return Err(format!("{shown} is not a file's path"));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!("{shown} has a .. in it"));
    }
    // Root first, each directory with the next step as its interest, down
    // to the parent and the file's name. A step that is a symbolic link
    // fails here (IN_DONT_FOLLOW | IN_ONLYDIR).
    let mut dir = PathBuf::from("/");
    for step in path.components().skip(1).map(|c| c.as_os_str()) {
        add(a, &dir, Some(step), WAY_MASK)?;
        dir.push(step);
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(format!("{shown} is a symbolic link")),
        Ok(_) => add(a, path, None, FILE_MASK),
        // Not there (yet): its creation is an entry event of the parent.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// Adds one watch: on a directory on the way to its entry `step`, or
/// (None) on a watched path. A second watch on one object adds to the first.
fn add(a: &mut Armed, path: &Path, step: Option<&OsStr>, mask: u32) -> Result<(), String> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} has a NUL byte", path.display()))?;
    local(&c).map_err(|e| format!("{}: {e}", path.display()))?;
    let only_dir = if step.is_some() { libc::IN_ONLYDIR } else { 0 };
    let flags = mask | libc::IN_MASK_ADD | libc::IN_DONT_FOLLOW | only_dir;
    // SAFETY: c is a NUL-terminated path; the call reads it only.
    let wd = unsafe { libc::inotify_add_watch(a.fd.as_raw_fd(), c.as_ptr(), flags) };
    if wd < 0 {
        let e = io::Error::last_os_error();
        if step.is_some() && e.raw_os_error() == Some(libc::ENOTDIR) {
            return Err(format!(
                "{} is a symbolic link or not a directory",
                path.display()
            ));
        }
        return Err(format!("watching {}: {e}", path.display()));
    }
    let i = match a.watches.iter().position(|(w, _)| *w == wd) {
        Some(i) => i,
        None => {
            a.watches.push((wd, Interest::default()));
            a.watches.len() - 1
        }
    };
    let interest = &mut a.watches[i].1;
    match step {
        None => interest.all = true,
        Some(s) if !interest.entries.iter().any(|e| e == s) => interest.entries.push(s.to_owned()),
        Some(_) => {}
    }
    Ok(())
}

/// Ok when the file system holding `path` reports every change (`LOCAL`).
fn local(path: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: a zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated; st is written only.
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between libcs
    let kind = st.f_type as i64;
    if LOCAL.contains(&kind) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "on a file system (type {kind:#x}) where inotify may miss changes"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Taken by every test with a folder: a mount in one (seen by every
    /// gate, as a mount anywhere is) must not fall inside another's quiet
    /// check.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// A fresh temp folder, removed on drop; the test holds ONE_AT_A_TIME
    /// meanwhile.
    struct Dir(
        PathBuf,
        #[allow(dead_code)] std::sync::MutexGuard<'static, ()>,
    );
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(tag: &str) -> Dir {
        let one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let d = std::env::temp_dir().join(format!("fshim-gate-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        Dir(fs::canonicalize(&d).expect("canonical temp dir"), one)
    }

    /// The file `name` written in `d`, and a gate [`armed`] on it.
    fn watched_file(d: &Dir, name: &str) -> (PathBuf, Gate) {
        let f = d.0.join(name);
        fs::write(&f, "x").expect("write");
        let g = armed(std::slice::from_ref(&f));
        (f, g)
    }

    /// Arms on `paths`, takes the first (pending) check, and asserts the gate
    /// is on and then quiet.
    fn armed(paths: &[PathBuf]) -> Gate {
        let mut g = Gate::never();
        g.arm(paths.to_vec());
        assert_eq!(g.off(), None, "the gate must arm on {paths:?}");
        assert!(g.must_check(), "the first check after arming stats");
        assert!(!g.must_check(), "nothing happened");
        g
    }

    #[test]
    fn a_touch_a_write_and_a_chmod_are_each_seen_once() {
        let d = tmp("touch");
        let (f, mut g) = watched_file(&d, "site.toml");
        let t = fs::File::options().write(true).open(&f).expect("open");
        t.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .expect("utimes");
        assert!(g.must_check(), "touch");
        assert!(!g.must_check(), "the touch was drained");
        fs::write(&f, "y").expect("rewrite");
        assert!(g.must_check(), "write");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(g.must_check(), "chmod");
        assert!(!g.must_check());
    }

    /// The one change the README says the gate misses on a local disk: a
    /// write through a shared mapping changes the file and its mtime, and
    /// inotify reports nothing. If a kernel ever reports it, this fails,
    /// and the README's "Deploying new code" needs the news.
    #[test]
    fn a_write_through_mmap_changes_the_mtime_and_goes_unseen() {
        use std::os::unix::io::AsRawFd;
        let d = tmp("mmap");
        let (f, mut g) = watched_file(&d, "site.toml");
        let before = fs::metadata(&f).and_then(|m| m.modified()).expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let file = fs::File::options()
            .read(true)
            .write(true)
            .open(&f)
            .expect("open");
        assert!(!g.must_check(), "an open for writing is no change");
        // SAFETY: a fresh shared mapping of the file's one byte, written,
        // synced and unmapped here; nothing else maps it.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                1,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED, "mmap");
            *(p as *mut u8) = b'y';
            assert_eq!(libc::msync(p, 1, libc::MS_SYNC), 0, "msync");
            assert_eq!(libc::munmap(p, 1), 0, "munmap");
        }
        drop(file);
        assert_eq!(
            fs::read(&f).expect("read"),
            b"y",
            "written through the mapping"
        );
        let after = fs::metadata(&f).and_then(|m| m.modified()).expect("mtime");
        assert_ne!(before, after, "the times see the write");
        assert!(!g.must_check(), "inotify reported a write through mmap");
    }

    #[test]
    fn other_entries_of_the_directories_are_no_reason_to_stat() {
        let d = tmp("others");
        let (_, mut g) = watched_file(&d, "mysite.fcgi");
        // An SQLite journal beside the site, a log, a cache directory.
        fs::write(d.0.join("db.sqlite3-journal"), "j").expect("write");
        fs::remove_file(d.0.join("db.sqlite3-journal")).expect("rm");
        fs::create_dir(d.0.join("cache")).expect("mkdir");
        fs::write(d.0.join("app.log"), "a").expect("write");
        fs::write(d.0.join("app.log"), "b").expect("write");
        assert!(!g.must_check());
    }

    #[test]
    fn a_file_replaced_by_rename_is_seen_and_then_the_new_one_is_watched() {
        let d = tmp("mv");
        let (f, mut g) = watched_file(&d, "mysite.fcgi");
        fs::write(d.0.join("new"), "new").expect("write");
        fs::rename(d.0.join("new"), &f).expect("mv");
        assert!(g.must_check(), "replaced");
        assert!(!g.must_check(), "placed again on the new file");
        fs::write(&f, "newer").expect("write");
        assert!(g.must_check(), "a write to the new file");
    }

    #[test]
    fn a_missing_file_created_is_seen() {
        let d = tmp("create");
        let f = d.0.join("app.py");
        let mut g = armed(std::slice::from_ref(&f));
        fs::write(&f, "x").expect("write");
        assert!(g.must_check(), "created");
        assert!(!g.must_check());
        fs::write(&f, "y").expect("write");
        assert!(g.must_check(), "a write to the file now there");
    }

    #[test]
    fn a_directory_on_the_way_renamed_and_replaced_is_seen() {
        let d = tmp("dirmv");
        let site = d.0.join("www");
        fs::create_dir(&site).expect("mkdir");
        let f = site.join("site.toml");
        fs::write(&f, "one").expect("write");
        let mut g = armed(std::slice::from_ref(&f));
        // A deploy: the new release moved into place.
        let next = d.0.join("www.new");
        fs::create_dir(&next).expect("mkdir");
        fs::write(next.join("site.toml"), "two").expect("write");
        fs::rename(&site, d.0.join("www.old")).expect("mv away");
        fs::rename(&next, &site).expect("mv in");
        assert!(g.must_check(), "the path leads to another file");
        assert!(!g.must_check());
        fs::write(&f, "three").expect("write");
        assert!(g.must_check(), "the watches followed the new directory");
        // The old one is not watched any more.
        fs::write(d.0.join("www.old").join("site.toml"), "x").expect("write");
        assert!(!g.must_check());
    }

    /// Unmounts on drop, whatever the test did.
    struct Mounted(std::ffi::CString);
    impl Drop for Mounted {
        fn drop(&mut self) {
            // SAFETY: a NUL-terminated path; no memory effects.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }

    #[test]
    fn a_folder_mounted_over_and_unmounted_is_seen() {
        // As root (the tests run so): bind mounts in the temp folder.
        let d = tmp("mount");
        let (www, alt) = (d.0.join("www"), d.0.join("alt"));
        for (dir, v) in [(&www, "one"), (&alt, "two")] {
            fs::create_dir(dir).expect("mkdir");
            fs::write(dir.join("site.toml"), v).expect("write");
        }
        let mut g = armed(&[www.join("site.toml")]);
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("no NUL");
        let (src, dst) = (c(&alt), c(&www));
        // SAFETY: NUL-terminated paths; a bind mount needs no data.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "mount --bind: {}", io::Error::last_os_error());
        let mounted = Mounted(dst);
        // The path shows `now`, and the gate saw the change once.
        let seen = |g: &mut Gate, now: &str, what: &str| {
            let read = fs::read_to_string(www.join("site.toml")).expect("read");
            assert_eq!(read, now, "{what}");
            assert!(g.must_check(), "{what}");
            assert!(!g.must_check(), "{what}, once");
        };
        seen(&mut g, "two", "mounted over");
        drop(mounted);
        seen(&mut g, "one", "unmounted");
    }

    #[test]
    fn a_watched_directory_counts_its_entries() {
        let d = tmp("watchdir");
        let app = d.0.join("app");
        fs::create_dir(&app).expect("mkdir");
        let mut g = armed(std::slice::from_ref(&app));
        fs::write(app.join("views.py"), "x").expect("write");
        assert!(g.must_check());
    }

    #[test]
    fn symbolic_links_relative_paths_and_missing_directories_leave_it_off() {
        let d = tmp("off");
        let real = d.0.join("release-1");
        fs::create_dir(&real).expect("mkdir");
        fs::write(real.join("site.toml"), "x").expect("write");
        std::os::unix::fs::symlink(&real, d.0.join("current")).expect("symlink");
        std::os::unix::fs::symlink(real.join("site.toml"), d.0.join("link.toml")).expect("symlink");
        for (path, why) in [
            (d.0.join("current/site.toml"), "symbolic link"),
            (d.0.join("link.toml"), "symbolic link"),
            // A watched folder written with a trailing slash, or /.
            (
                PathBuf::from(format!("{}/current/", d.0.display())),
                "symbolic link",
            ),
            (d.0.join("current/."), "symbolic link"),
            (PathBuf::from("site.toml"), "relative"),
            (d.0.join("nowhere/site.toml"), "No such file"),
        ] {
            let mut g = Gate::never();
            g.arm(vec![path.clone()]);
            let off = g.off().unwrap_or_default();
            assert!(off.contains(why), "{path:?}: {off:?}");
            assert!(g.must_check() && g.must_check(), "off: every check stats");
        }
    }

    #[test]
    fn a_file_system_that_may_miss_changes_leaves_it_off() {
        // /proc is not on the list (nor is any network file system).
        let mut g = Gate::never();
        g.arm(vec![PathBuf::from("/proc/cpuinfo")]);
        let off = g.off().unwrap_or_default();
        assert!(off.contains("may miss changes"), "{off:?}");
        assert!(g.must_check());
    }

    #[test]
    fn a_gate_that_could_not_arm_tries_again() {
        let d = tmp("retry");
        let f = d.0.join("later/site.toml");
        let mut g = Gate::never();
        g.arm(vec![f.clone()]);
        assert!(g.off().is_some());
        fs::create_dir(d.0.join("later")).expect("mkdir");
        let State::Off { retry_at, .. } = &mut g.state else {
            panic!("the gate is not off");
        };
        *retry_at = Instant::now();
        assert!(g.must_check(), "off, and then just armed");
        assert_eq!(g.off(), None, "armed on the retry");
        assert!(!g.must_check());
    }
}
