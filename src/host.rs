//! Which system stronghost is running on. In a chroot (an image build: debootstrap, mmdebstrap
//! `--include`, `chroot /target apt install`) the kernel's network is the build machine's, not the
//! one of the root being built: writing policy there would reconfigure the wrong host.

use std::os::unix::fs::MetadataExt;

/// The override for someone who really means to act on the kernel from a chroot (a rescue shell).
pub const ALLOW_CHROOT: &str = "STRONGHOST_ALLOW_CHROOT";

/// True when our root directory is not PID 1's: a chroot. PID 1's root is not always readable
/// (a container's init under another user namespace: EACCES), so a second sign is used too:
/// mountinfo lists mounts relative to our root, and has no mount on "/" when the root is a plain
/// directory. Without /proc it cannot tell, and says no, as `ischroot` does.
pub fn in_chroot() -> bool {
    if let (Ok(ours), Ok(init)) = (std::fs::metadata("/"), std::fs::metadata("/proc/1/root"))
        && (ours.dev(), ours.ino()) != (init.dev(), init.ino())
    {
        return true;
    }
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| !has_root_mount(&m))
}

/// Whether a mountinfo text has a mount whose mount point (the fifth field) is "/".
fn has_root_mount(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some("/"))
}

/// The refusal message, or None when writing is fine here.
pub fn refuse_writes() -> Option<String> {
    if !in_chroot() || std::env::var_os(ALLOW_CHROOT).is_some_and(|v| v == "1") {
        return None;
    }
    Some(format!(
        "running in a chroot: the network this kernel has is the host's, not this root's; nothing \
         changed (the installed system applies the policy when it boots; {ALLOW_CHROOT}=1 overrides)"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_test_runner_is_not_in_a_chroot() {
        // The labs and CI run on the machine's own root; a false positive here would make every
        // hook a no-op.
        assert!(!super::in_chroot());
    }

    #[test]
    fn a_root_that_is_a_plain_directory_has_no_mount_on_slash() {
        let normal = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n65 27 0:39 / /proc rw - proc proc rw\n";
        let chrooted = "65 44 0:39 / /proc rw,relatime - proc proc rw\n";
        assert!(super::has_root_mount(normal));
        assert!(!super::has_root_mount(chrooted));
        assert!(!super::has_root_mount(""));
    }
}
