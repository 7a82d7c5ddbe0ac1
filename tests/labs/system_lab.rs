//! The package on a real system: Debian 12 and Debian 13 booted with systemd as PID 1
//! (lab/system.rs), the freshly built .deb installed with apt, for systemd-networkd,
//! NetworkManager and ifupdown (+ dhclient on 12, + dhcpcd-base on 13, each release's default). After install, a warm reboot and a cold one: the watcher enabled and active, the
//! policy in place without a manual step, the same table numbers, a clean journal with
//! stronghost's fields; `apt remove` and `apt purge` leave the system as before. And an image
//! build: the package installed into a chroot on a host running stronghost changes nothing there.

use crate::lab::system::{Release, Stack, System};
use crate::lab::{self, Lab, ok, wait_for};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out =
            ok(Command::new("bash").arg(repo.join("packaging/build-deb.sh")).arg("--binary").arg(lab::stronghost_bin()).current_dir(&repo));
        repo.join(out.lines().last().unwrap().trim())
    })
}

/// interface → table, as `stronghost status` reports them.
fn tables(s: &System) -> BTreeMap<String, u64> {
    let v: serde_json::Value = serde_json::from_str(&s.sh("stronghost status --json")).unwrap();
    v["interfaces"].as_array().unwrap().iter().filter_map(|i| Some((i["interface"].as_str()?.to_string(), i["table"].as_u64()?))).collect()
}

/// The watcher enabled and running, the policy in place (check ok), every interface strong, the
/// journal clean.
fn assert_in_force(s: &System, when: &str) {
    assert_eq!(s.sh("systemctl is-enabled stronghost-watch.service").trim(), "enabled", "{when}");
    wait_for(Duration::from_secs(30), "stronghost check to pass", || s.exec("stronghost check").status.success());
    assert_eq!(s.sh("systemctl is-active stronghost-watch.service").trim(), "active", "{when}");
    s.assert_strong(when);
    // No warning or error of stronghost's, no failed unit of its, no ordering cycle this boot.
    let warnings = s.sh("journalctl -b -q --no-pager -t stronghost -p warning");
    assert!(warnings.trim().is_empty(), "{when}: stronghost warned:\n{warnings}");
    let about = s.sh("journalctl -b -q --no-pager -p warning -o cat | grep -i stronghost || true");
    assert!(about.trim().is_empty(), "{when}: warnings about stronghost:\n{about}");
    let cycles = s.sh("journalctl -b -q --no-pager | grep -i 'ordering cycle' || true");
    assert!(cycles.trim().is_empty(), "{when}: {cycles}");
    let failed = s.sh("systemctl --failed --no-legend --plain");
    assert!(!failed.contains("stronghost"), "{when}: {failed}");
}

fn installed_then_rebooted_then_removed(release: Release, stack: Stack) {
    let mut s = System::on(release, stack, 3);
    s.copy_in(deb(), "/root/stronghost.deb");
    s.boot();
    s.wait_addresses();
    let before = s.network_state();
    s.count_egress();
    s.start_session();

    let out = s.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/stronghost.deb 2>&1");
    assert!(out.contains("Setting up nftables") && out.contains("Setting up stronghost"), "apt install:\n{out}");
    assert_in_force(&s, "after apt install");
    s.assert_session_alive("through apt install");
    let tables_installed = tables(&s);
    assert_eq!(tables_installed.len(), s.n, "{tables_installed:?}");

    // The journal has each interface's history under its own field.
    let entries = s.sh("journalctl -q --no-pager -t stronghost IFACE=eth1 -o json");
    let first: serde_json::Value = serde_json::from_str(entries.lines().next().expect("no journal entry with IFACE=eth1")).unwrap();
    assert_eq!(first["SYSLOG_IDENTIFIER"], "stronghost");
    assert_eq!(first["EVENT_SOURCE"], "watcher", "{first}");
    assert_eq!(first["TABLE"].as_str(), Some(tables_installed["eth1"].to_string().as_str()), "{first}");

    if stack == Stack::Networkd {
        // An upgrade (here: the same version again) restarts the watcher: the new binary runs.
        let pid = s.sh("systemctl show -p MainPID --value stronghost-watch.service");
        s.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall /root/stronghost.deb");
        let after = s.sh("systemctl show -p MainPID --value stronghost-watch.service");
        assert_ne!(pid.trim(), after.trim(), "the watcher was not restarted by the upgrade");
        assert_in_force(&s, "after an upgrade");
    }

    s.reboot_warm();
    s.wait_addresses();
    assert_in_force(&s, "after a warm reboot");
    assert_eq!(tables(&s), tables_installed, "table numbers changed over a warm reboot");

    s.reboot_cold();
    s.count_egress();
    s.wait_addresses();
    assert_in_force(&s, "after a cold reboot");
    assert_eq!(tables(&s), tables_installed, "table numbers changed over a cold reboot");
    // The stack's own hook ran at boot too (NetworkManager's dispatcher is D-Bus activated).
    let hook = match stack {
        Stack::NetworkManager => Some("NetworkManager"),
        Stack::Ifupdown if release == Release::Bookworm => Some("dhclient"),
        Stack::Ifupdown => Some("dhcpcd"),
        Stack::Networkd => None, // networkd has no hooks: the watcher is its integration
    };
    if let Some(source) = hook {
        let seen = s.sh(&format!("journalctl -b -q --no-pager -t stronghost EVENT_SOURCE={source} IFACE=eth2"));
        assert!(!seen.trim().is_empty(), "no {source} hook run for eth2 in this boot's journal");
    }

    s.start_session();
    let removed = s.sh("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q stronghost 2>&1");
    assert!(!removed.contains("warning"), "apt remove warned:\n{removed}");
    s.assert_session_alive("through apt remove");
    let unit = s.exec("systemctl is-active stronghost-watch.service");
    assert!(!unit.status.success(), "the watcher still runs after apt remove");
    assert_eq!(s.network_state(), before, "apt remove did not restore the network as it was before install");
    // No "directory '/lib/systemd/system' not empty so not removed" (DEP 17 on Debian 13).
    let purged = s.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q stronghost 2>&1");
    assert!(!purged.contains("warning"), "apt purge warned:\n{purged}");
    let left = s.sh("find / -xdev -name '*stronghost*' -not -path /root/stronghost.deb 2>/dev/null || true");
    assert!(left.trim().is_empty(), "left after purge:\n{left}");
    let units = s.sh("systemctl list-units --all --no-legend --plain 'stronghost*'");
    assert!(units.trim().is_empty(), "units left after purge:\n{units}");
    assert_eq!(s.network_state(), before, "apt purge changed the network");
}

/// The files `paths` (all of them when empty) of the repository at `commit`, into `dest`; false
/// when the clone does not hold that commit (a shallow clone).
fn git_tree(commit: &str, paths: &str, dest: &Path) -> bool {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("git archive {commit} {paths} | tar -x -C {}", dest.display()))
        .current_dir(&repo)
        .output()
        .unwrap();
    out.status.success()
}

/// 0.1.0 as released (its packaging from git, today's binary): a sync unit enabled under
/// network-online.target and the watcher under multi-user.target, both hand-enabled by postinst.
fn deb_0_1_0() -> Option<PathBuf> {
    const RELEASE: &str = "ae88cfd"; // the last commit of 0.1.0's packaging
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tree = std::env::temp_dir().join(format!("stronghost-0.1.0-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("target/debug/examples")).unwrap();
    if !git_tree(RELEASE, "Cargo.toml README.md packaging dist hooks", &tree) {
        return None;
    }
    ok(Command::new("cp").arg(repo.join("target/debug/examples/gen_docs")).arg(tree.join("target/debug/examples/")));
    let out = ok(Command::new("bash").arg("packaging/build-deb.sh").arg("--binary").arg(lab::stronghost_bin()).current_dir(&tree));
    let deb = std::env::temp_dir().join("stronghost_0.1.0-1_amd64.deb");
    ok(Command::new("cp").arg(tree.join(out.lines().last().unwrap().trim())).arg(&deb));
    let _ = std::fs::remove_dir_all(&tree);
    Some(deb)
}

/// An upgrade from 0.1.0: its sync unit goes entirely (not left "not-found, active (exited)"), the
/// watcher is restarted with the new binary, the policy stays.
#[test]
fn system_upgrade_from_0_1_0() {
    let Some(old) = deb_0_1_0() else {
        eprintln!("SKIPPED system_upgrade_from_0_1_0: this clone has no git history of 0.1.0 (a shallow clone?)");
        return;
    };
    let mut s = System::new(Stack::Networkd, 2);
    s.copy_in(&old, "/root/old.deb");
    s.copy_in(deb(), "/root/stronghost.deb");
    let _ = std::fs::remove_file(&old);
    s.boot();
    s.wait_addresses();
    s.count_egress();
    s.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/old.deb");
    assert!(s.sh("systemctl list-units --all --no-legend --plain 'stronghost*'").contains("stronghost-sync.service"));
    let out = s.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/stronghost.deb 2>&1");
    assert!(out.contains("Unpacking stronghost (0.4.1-1) over (0.1.0-1)"), "{out}");
    let units = s.sh("systemctl list-units --all --no-legend --plain 'stronghost*'");
    assert!(!units.contains("stronghost-sync"), "the old sync unit is left after the upgrade:\n{units}");
    let wants = s.sh("find /etc/systemd/system -name 'stronghost-sync*'");
    assert!(wants.trim().is_empty(), "enablement of the old sync unit left:\n{wants}");
    assert_in_force(&s, "after the upgrade from 0.1.0");
    s.reboot_warm();
    s.wait_addresses();
    assert_in_force(&s, "after the upgrade from 0.1.0 and a reboot");
}

/// 0.2.0 as released: its packaging and its binary, built from git (about a minute, once per
/// `target/`), so that the upgrade meets a host as 0.2.0 left it (whole-word marks, its nftables
/// layout, the unit under /lib/systemd/system).
fn deb_0_2_0() -> Option<PathBuf> {
    const RELEASE: &str = "af80657"; // the last commit of 0.2.0
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tree = repo.join("target/release-0.2.0");
    let bin = tree.join("target/debug/stronghost");
    if !bin.exists() {
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(&tree).unwrap();
        if !git_tree(RELEASE, "", &tree) {
            return None;
        }
        ok(Command::new("cargo").args(["build", "--locked", "--bin", "stronghost", "--example", "gen_docs"]).current_dir(&tree));
    }
    let out = ok(Command::new("bash").arg("packaging/build-deb.sh").arg("--binary").arg(&bin).current_dir(&tree));
    Some(tree.join(out.lines().last().unwrap().trim()))
}

/// An upgrade from 0.2.0 on Debian 13: the unit moves from /lib/systemd/system to /usr/lib within
/// the package (the /lib alias: dpkg must not delete the new file as the old one), the watcher
/// is restarted with the new binary, and the policy 0.2.0 wrote — its rules, its nftables table —
/// becomes this release's in place, with no step by hand.
#[test]
fn system_trixie_upgrade_from_0_2_0() {
    let Some(old) = deb_0_2_0() else {
        eprintln!("SKIPPED system_trixie_upgrade_from_0_2_0: this clone has no git history of 0.2.0 (a shallow clone?)");
        return;
    };
    let mut s = System::on(Release::Trixie, Stack::Networkd, 2);
    s.copy_in(&old, "/root/old.deb");
    s.copy_in(deb(), "/root/stronghost.deb");
    s.boot();
    s.wait_addresses();
    s.count_egress();
    s.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/old.deb");
    wait_for(Duration::from_secs(30), "0.2.0's check to pass", || s.exec("stronghost check").status.success());
    assert!(s.sh("ip rule").contains("fwmark 0x1005 lookup"), "0.2.0's whole-word marks: {}", s.sh("ip rule"));
    let tables_before = tables(&s);
    let pid = s.sh("systemctl show -p MainPID --value stronghost-watch.service");
    let out = s.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/stronghost.deb 2>&1");
    // dpkg cannot remove the directories 0.2.0 shipped under the /lib alias (they hold every
    // other unit): it says so once, on this upgrade; nothing else may warn.
    let known = ["unable to delete old directory '/lib/systemd/system'", "unable to delete old directory '/lib/systemd'"];
    let other: Vec<&str> = out.lines().filter(|l| l.contains("warning") && !known.iter().any(|k| l.contains(k))).collect();
    assert!(out.contains("Unpacking stronghost (0.4.1-1) over (0.2.0-1)") && other.is_empty(), "{out}");
    assert!(s.exec("test -f /usr/lib/systemd/system/stronghost-watch.service").status.success(), "the unit file is gone after the move");
    let after = s.sh("systemctl show -p MainPID --value stronghost-watch.service");
    assert_ne!(pid.trim(), after.trim(), "the watcher was not restarted by the upgrade");
    assert_in_force(&s, "after the upgrade from 0.2.0");
    assert_eq!(tables(&s), tables_before, "table numbers changed over the upgrade");
    let rules = s.sh("ip rule");
    assert!(!rules.contains("fwmark 0x1005 lookup") && rules.contains("/0xff000000 lookup"), "{rules}");
    s.reboot_warm();
    s.wait_addresses();
    assert_in_force(&s, "after the upgrade from 0.2.0 and a reboot");
}

#[test]
fn system_networkd() {
    installed_then_rebooted_then_removed(Release::Bookworm, Stack::Networkd);
}

#[test]
fn system_networkmanager() {
    installed_then_rebooted_then_removed(Release::Bookworm, Stack::NetworkManager);
}

#[test]
fn system_ifupdown_dhclient() {
    installed_then_rebooted_then_removed(Release::Bookworm, Stack::Ifupdown);
}

#[test]
fn system_trixie_networkd() {
    installed_then_rebooted_then_removed(Release::Trixie, Stack::Networkd);
}

#[test]
fn system_trixie_networkmanager() {
    installed_then_rebooted_then_removed(Release::Trixie, Stack::NetworkManager);
}

#[test]
fn system_trixie_ifupdown_dhcpcd() {
    installed_then_rebooted_then_removed(Release::Trixie, Stack::Ifupdown);
}

/// An image build on a host that runs stronghost: the package installed into, and removed from, a
/// chroot (the host's kernel, the image's files) changes nothing of the host's policy.
#[test]
fn system_image_build_in_a_chroot_leaves_the_host_alone() {
    lab::require_root();
    let n = 2;
    let mut host = Lab::builder(n).dhclient_hook().build();
    for k in 0..n {
        host.start_dhclient(k);
    }
    for k in 0..n {
        host.wait_applied(k, &lab::addr(k));
    }
    let dump = |l: &Lab| {
        l.host_ok(&["ip", "-4", "rule"])
            + &l.host_ok(&["ip", "-4", "route", "show", "table", "all"])
            + &l.host_ok(&["nft", "list", "table", "inet", "stronghost"])
            + &l.host_ok(&["sh", "-c", "grep . /proc/sys/net/ipv4/conf/eth*/arp_* /proc/sys/net/ipv4/conf/eth*/rp_filter"])
    };
    let before = dump(&host);

    let image = host.dir.join("image");
    ok(Command::new("cp").arg("-a").arg(crate::lab::system::rootfs()).arg(&image));
    ok(Command::new("cp").arg(deb()).arg(image.join("root/stronghost.deb")));
    let i = image.display().to_string();
    // As mmdebstrap --include or a Dockerfile RUN does it: /proc mounted, no systemd running.
    let in_image = |cmd: &str| {
        let out =
            host.host(&["sh", "-c", &format!("mount -t proc proc {i}/proc && chroot {i} sh -c '{cmd}'; echo rc=$?; umount {i}/proc")]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let said = in_image("DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/stronghost.deb");
    assert!(said.contains("Setting up stronghost") && said.contains("rc=0"), "{said}");
    assert!(said.contains("systemd is not running here"), "{said}");
    // Enabled in the image, for its first boot.
    let wants = image.join("etc/systemd/system/multi-user.target.wants/stronghost-watch.service");
    assert!(wants.symlink_metadata().is_ok(), "not enabled in the image: {said}");
    for cmd in ["stronghost sync", "stronghost release --all"] {
        let said = in_image(cmd);
        assert!(said.contains("running in a chroot") && said.contains("rc=2"), "{cmd}: {said}");
    }
    let said = in_image("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q stronghost");
    assert!(said.contains("rc=0"), "{said}");
    assert_eq!(dump(&host), before, "the chroot install changed the host's network");
    for k in 0..n {
        host.assert_strong(k, &lab::addr(k));
    }
    let _ = std::fs::remove_dir_all(&image);
}
