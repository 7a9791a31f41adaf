//! The segment's security model: named segments are created 0600 and the
//! kernel (not ringway) refuses them to another user; names are checked
//! before anything is opened; `O_NOFOLLOW` means a symlink planted in
//! `/dev/shm` leads nowhere; no path read from a segment is ever opened
//! (a doorbell's path is derived from the segment's own inode, never read).

mod common;

use common::{child, exit_child, unique_name, Unlink};
use ringway::spsc::{Consumer, Producer};
use ringway::Error;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

fn mode_of(name: &str) -> u32 {
    std::fs::metadata(format!("/dev/shm/{name}"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        // Under umask MASK (as `nobody` when root, so the file's mode
        // binds), create every kind and check it is 0600.
        "umask_modes" => {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                // SAFETY: plain syscalls; this child does nothing else first.
                assert_eq!(unsafe { libc::setgid(65534) }, 0, "setgid");
                // SAFETY: as above.
                assert_eq!(unsafe { libc::setuid(65534) }, 0, "setuid");
            }
            // SAFETY: umask has no memory preconditions; this process
            // runs nothing else.
            unsafe { libc::umask(common::arg_u64("MASK") as libc::mode_t) };
            let names: Vec<String> = (0..4)
                .map(|i| format!("{}-{i}", common::arg("NAME")))
                .collect();
            let _u: Vec<Unlink> = names.iter().cloned().map(Unlink).collect();
            let _a = Producer::create(&names[0], 64).unwrap();
            let _b = ringway::mpmc::Sender::create(&names[1], 4, 8).unwrap();
            let _c = ringway::pipe::Pipe::create(&names[2], true, 64).unwrap();
            let _d = ringway::counters::CounterMap::create(&names[3], 4).unwrap();
            for n in &names {
                assert_eq!(mode_of(n), 0o600, "{n}");
                let meta = std::fs::metadata(format!("/dev/shm/{n}")).unwrap();
                // SAFETY: geteuid has no preconditions.
                assert_eq!(meta.uid(), unsafe { libc::geteuid() });
            }
        }
        // Become another user, then try every kind of open.
        "other_user" => {
            let uid = common::arg_u64("UID") as libc::uid_t;
            // SAFETY: a plain syscall; this child does nothing else first.
            assert_eq!(unsafe { libc::setgid(uid) }, 0, "setgid");
            // SAFETY: as above.
            assert_eq!(unsafe { libc::setuid(uid) }, 0, "setuid");
            let name = common::arg("NAME");
            let refused = |r: ringway::Result<()>| match r {
                Err(Error::Io { source, .. }) => {
                    source.kind() == std::io::ErrorKind::PermissionDenied
                }
                _ => false,
            };
            assert!(refused(Consumer::open(&name).map(drop)), "spsc open");
            assert!(refused(ringway::mpmc::Receiver::open(&name).map(drop)));
            assert!(refused(ringway::pipe::Pipe::open(&name).map(drop)));
            assert!(refused(
                ringway::counters::CounterMap::open(&name).map(drop)
            ));
            // Nor can it read the bytes, or remove the name through ringway.
            assert!(std::fs::read(format!("/dev/shm/{name}")).is_err());
            assert!(ringway::admin::remove(&name, true).is_err());
        }
        other => panic!("unknown role {other}"),
    }
    exit_child(0);
}

#[test]
fn every_kind_is_created_0600_whatever_the_umask() {
    // umask 0 would widen a careless mode; 0o277 would narrow 0600 to 0400
    // if the creator trusted shm_open's mode instead of setting it (and a
    // creator that reopens its file before setting it would fail). Each in
    // a child: the umask is process-wide and the other tests run in
    // parallel.
    for (k, mask) in [0u32, 0o277].into_iter().enumerate() {
        child("umask_modes")
            .arg("NAME", unique_name(&format!("mode{k}")))
            .arg("MASK", mask)
            .spawn()
            .expect_success(Duration::from_secs(30));
    }
}

#[test]
fn another_user_is_refused_by_the_kernel() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Becoming another user needs root; as a normal user the check is
        // the mode test above plus the kernel's own permission check.
        eprintln!("skipped: not root, cannot switch to another uid");
        return;
    }
    let name = unique_name("other-user");
    let _u = Unlink(name.clone());
    let _tx = Producer::create(&name, 64).unwrap();
    let mut c = child("other_user")
        .arg("NAME", &name)
        .arg("UID", 65534) // nobody
        .spawn();
    c.expect_success(Duration::from_secs(30));
    // Still there, still ours.
    assert!(ringway::admin::inspect(&name).is_ok());
}

#[test]
fn names_are_checked_before_anything_is_opened() {
    for bad in ["", ".", "..", "a/b", "../etc/passwd", "/abs", "nul\0byte"] {
        for r in [
            Consumer::open(bad).map(drop),
            Producer::create(bad, 64).map(drop),
            ringway::mpmc::Receiver::open(bad).map(drop),
            ringway::pipe::Pipe::open(bad).map(drop),
            ringway::counters::CounterMap::open(bad).map(drop),
            ringway::admin::inspect(bad).map(drop),
            ringway::admin::remove(bad, true),
            ringway::unlink(bad),
        ] {
            assert!(
                matches!(r, Err(Error::InvalidName { .. })),
                "{bad:?}: {r:?}"
            );
        }
    }
    let long = "x".repeat(201);
    assert!(matches!(
        Consumer::open(&long),
        Err(Error::InvalidName { .. })
    ));
    // The longest accepted name (200 bytes) works.
    let mut longest = unique_name("max");
    longest.extend(std::iter::repeat_n('y', 200 - longest.len()));
    let _u = Unlink(longest.clone());
    Producer::create(&longest, 64).expect("a 200-byte name is valid");
}

#[test]
fn a_symlink_in_dev_shm_is_not_followed() {
    // A real segment, and a link to it planted under another name.
    let target = unique_name("link-target");
    let link = unique_name("link");
    let _u = (Unlink(target.clone()), Unlink(link.clone()));
    let _rx = Consumer::create(&target, 64).unwrap();
    std::os::unix::fs::symlink(format!("/dev/shm/{target}"), format!("/dev/shm/{link}")).unwrap();
    match Producer::open(&link) {
        Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::ELOOP)),
        other => panic!("a symlink was followed: {other:?}"),
    }
    assert!(ringway::admin::inspect(&link).is_err());
    // Creating over a planted link fails too (O_EXCL and O_NOFOLLOW).
    assert!(Producer::create(&link, 64).is_err());
    let _ = std::fs::remove_file(format!("/dev/shm/{link}"));
}
