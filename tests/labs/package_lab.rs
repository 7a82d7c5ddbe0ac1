//! The packages: built by packaging/, lint-clean, with every file in its place; the .deb
//! installed for real into the lab host (private overlays on /etc, /usr, /var: the machine sees
//! nothing), driven by the dhclient hook it installed, then removed (nothing of stronghost's
//! left in the kernel, sysctls and link groups restored) and purged.

use crate::lab;
use crate::lab::{Lab, addr, ok};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn build(script: &str) -> PathBuf {
    let out =
        ok(Command::new("bash").arg(repo().join("packaging").join(script)).arg("--binary").arg(lab::stronghost_bin()).current_dir(repo()));
    repo().join(out.lines().last().unwrap().trim())
}

fn files(list: &str) -> BTreeSet<String> {
    list.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

const COMMON: &str = "
/usr/sbin/stronghost
/etc/stronghost/stronghost.conf
/etc/iproute2/rt_tables.d/stronghost.conf
/etc/iproute2/rt_protos.d/stronghost.conf
/usr/lib/systemd/networkd.conf.d/stronghost.conf
/usr/lib/NetworkManager/dispatcher.d/70-stronghost
/usr/lib/stronghost/udhcpc-script
/usr/share/man/man8/stronghost.8.gz
/usr/share/man/man8/stronghost-apply.8.gz
/usr/share/man/man8/stronghost-release.8.gz
/usr/share/man/man8/stronghost-sync.8.gz
/usr/share/man/man8/stronghost-status.8.gz
/usr/share/man/man8/stronghost-check.8.gz
/usr/share/man/man8/stronghost-plan.8.gz
/usr/share/man/man8/stronghost-watch.8.gz
/usr/share/man/man8/stronghost-hook.8.gz
/usr/share/man/man5/stronghost.conf.5.gz
/usr/share/bash-completion/completions/stronghost
/usr/share/fish/vendor_completions.d/stronghost.fish
";

#[test]
fn deb_lints_clean_installs_works_removes_and_purges() {
    lab::require_root();
    let deb = build("build-deb.sh");

    let lint = Command::new("lintian").arg(&deb).output().unwrap();
    let lint = String::from_utf8_lossy(&lint.stdout).into_owned();
    assert!(!lint.lines().any(|l| l.starts_with("E:")), "lintian errors:\n{lint}");

    // Contents: every file in its Debian place.
    let tar = ok(Command::new("sh").arg("-c").arg(format!("dpkg-deb --fsys-tarfile {} | tar -t", deb.display())));
    let have: BTreeSet<String> = tar.lines().filter(|l| !l.ends_with('/')).map(|l| l.trim_start_matches('.').to_string()).collect();
    let mut want = files(COMMON);
    want.extend(files(
        "
/etc/dhcp/dhclient-exit-hooks.d/stronghost
/usr/lib/dhcpcd/dhcpcd-hooks/70-stronghost
/etc/network/if-up.d/stronghost
/etc/network/if-post-down.d/stronghost
/usr/lib/systemd/system/stronghost-watch.service
/usr/share/zsh/vendor-completions/_stronghost
/usr/share/doc/stronghost/README.md.gz
/usr/share/doc/stronghost/design.md.gz
/usr/share/doc/stronghost/operations.md.gz
/usr/share/doc/stronghost/copyright
/usr/share/doc/stronghost/changelog.Debian.gz
/usr/share/lintian/overrides/stronghost
",
    ));
    assert_eq!(have, want, "package contents differ");
    let conffiles = ok(Command::new("sh").arg("-c").arg(format!("dpkg-deb --ctrl-tarfile {} | tar -xO ./conffiles", deb.display())));
    for c in ["/etc/stronghost/stronghost.conf", "/etc/dhcp/dhclient-exit-hooks.d/stronghost", "/etc/iproute2/rt_tables.d/stronghost.conf"]
    {
        assert!(conffiles.contains(c), "{c} is not a conffile");
    }
    let control = ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version").arg("Depends"));
    assert!(control.contains(&format!("Version: {}-1", env!("CARGO_PKG_VERSION"))), "{control}");
    assert!(control.contains("nftables") && control.contains("iproute2"), "{control}");

    // A real install into the lab host, then the dhclient scenario with the installed files only.
    let mut lab = Lab::builder(3).bare().build();
    lab.seed_foreign();
    let installed = lab.host(&["dpkg", "-i", deb.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&installed.stderr).into_owned();
    assert!(installed.status.success(), "dpkg -i: {said}");
    // This lab host does not run systemd: installing changes nothing in the kernel and says how
    // the policy gets applied instead.
    assert!(said.contains("systemd is not running here"), "{said}");
    assert!(!lab.host_ok(&["ip", "-N", "-4", "rule"]).contains("proto 83"), "dpkg -i applied policy without systemd");
    assert!(!lab.host(&["nft", "list", "table", "inet", "stronghost"]).status.success(), "dpkg -i made the nft table");
    // The units as installed are valid (their man page is installed too).
    let verify = lab.host(&["systemd-analyze", "verify", "/usr/lib/systemd/system/stronghost-watch.service"]);
    let said = String::from_utf8_lossy(&verify.stdout).into_owned() + &String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    for k in 0..3 {
        lab.start_dhclient(k);
    }
    for k in 0..3 {
        lab.wait_applied(k, &addr(k));
    }
    for k in 0..3 {
        lab.assert_strong(k, &addr(k));
    }
    let rules = lab.host_ok(&["ip", "rule"]);
    assert!(rules.contains("proto stronghost") && rules.contains("lookup stronghost-41"), "the installed names are used: {rules}");

    // Remove: nothing of stronghost's is left, and what it changed is as it was.
    for k in 0..3 {
        lab.kill_dhclient(k);
    }
    lab.host_ok(&["dpkg", "-r", "stronghost"]);
    let dump = lab.host_ok(&["ip", "-N", "-4", "rule"]) + &lab.host_ok(&["ip", "-N", "-4", "route", "show", "table", "all"]);
    assert!(!dump.contains("proto 83"), "left after dpkg -r:\n{dump}");
    assert!(!lab.host(&["nft", "list", "table", "inet", "stronghost"]).status.success(), "nft table left after dpkg -r");
    for k in 0..3 {
        for knob in ["arp_ignore", "arp_announce", "arp_filter", "rp_filter"] {
            let v = lab.host_ok(&["cat", &format!("/proc/sys/net/ipv4/conf/eth{k}/{knob}")]);
            assert_eq!(v.trim(), "0", "eth{k} {knob} not restored by dpkg -r");
        }
        assert!(lab.host_ok(&["ip", "link", "show", &format!("eth{k}")]).contains("group default"));
    }
    lab.assert_foreign_intact("after dpkg -r");
    assert!(lab.host_ok(&["ls", "/var/lib/stronghost"]).contains("tables.json"), "remove keeps state for a reinstall");
    lab.host_ok(&["dpkg", "-P", "stronghost"]);
    assert!(!lab.host(&["test", "-e", "/var/lib/stronghost"]).status.success(), "purge left /var/lib/stronghost");
    assert!(!lab.host(&["test", "-e", "/etc/stronghost/stronghost.conf"]).status.success(), "purge left the conffile");
}

#[test]
fn rpm_lints_clean_has_every_file_and_scriptlets() {
    lab::require_root();
    let rpm = build("build-rpm.sh");
    let lint = Command::new("rpmlint").arg("-c").arg(repo().join("packaging/rpm/rpmlint.toml")).arg(&rpm).output().unwrap();
    let lint = String::from_utf8_lossy(&lint.stdout).into_owned();
    assert!(lint.contains(" 0 errors"), "rpmlint:\n{lint}");

    let mut want = files(COMMON);
    want.extend(files(
        "
/usr/lib/systemd/system/stronghost-watch.service
/usr/lib/systemd/system-preset/80-stronghost.preset
/etc/dhcp/dhclient.d/stronghost.sh
/usr/libexec/dhcpcd-hooks/70-stronghost
/usr/share/zsh/site-functions/_stronghost
/usr/share/doc/stronghost/README.md
/usr/share/doc/stronghost/design.md
/usr/share/doc/stronghost/operations.md
/usr/share/licenses/stronghost/copyright
",
    ));
    // Files (directories are listed by `rpm -qlv` with a leading d: every one is owned).
    let listing = ok(Command::new("rpm").args(["-qlvp", "--nodigest", "--nosignature"]).arg(&rpm));
    let have: BTreeSet<String> =
        listing.lines().filter(|l| !l.starts_with('d')).filter_map(|l| l.split_whitespace().last().map(str::to_string)).collect();
    assert_eq!(have, want, "rpm contents differ");
    let owned_dirs: BTreeSet<&str> = listing.lines().filter(|l| l.starts_with('d')).filter_map(|l| l.split_whitespace().last()).collect();
    for d in ["/usr/share/doc/stronghost", "/usr/share/licenses/stronghost", "/etc/dhcp/dhclient.d", "/usr/lib/stronghost"] {
        assert!(owned_dirs.contains(d), "{d} is not owned by the package: {owned_dirs:?}");
    }
    // dhclient-script sources only executable hooks.
    assert!(listing.lines().any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("/etc/dhcp/dhclient.d/stronghost.sh")), "{listing}");
    // Unit handling by the systemd macros: preset on install, stop on erase, restart on upgrade;
    // nothing applied to the network by a scriptlet itself.
    let scripts = ok(Command::new("rpm").args(["-qp", "--scripts", "--nodigest", "--nosignature"]).arg(&rpm));
    assert!(scripts.contains("preset stronghost-watch.service"), "{scripts}");
    assert!(scripts.contains("disable --now stronghost-watch.service"), "{scripts}");
    assert!(scripts.contains("try-restart stronghost-watch.service"), "{scripts}");
    assert!(!scripts.contains("stronghost sync"), "{scripts}");
    assert!(scripts.contains("preuninstall scriptlet") && scripts.contains("stronghost release --all"), "{scripts}");
    let config = ok(Command::new("rpm").args(["-qcp", "--nodigest", "--nosignature"]).arg(&rpm));
    assert!(config.contains("/etc/stronghost/stronghost.conf"), "{config}");

    // Install into an empty root. Its scriptlets need a shell and the kernel policy tools, which an
    // empty root does not have: they are exercised by the .deb test on a live lab host.
    let root = std::env::temp_dir().join(format!("stronghost-rpmroot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let r = root.to_str().unwrap();
    ok(Command::new("rpm").args(["--root", r, "--initdb"]));
    ok(Command::new("rpm").args(["--root", r, "-i", "--nodeps", "--noscripts", "--nodigest", "--nosignature"]).arg(&rpm));
    let q = ok(Command::new("rpm").args(["--root", r, "-q", "stronghost"]));
    assert!(q.starts_with("stronghost-"), "{q}");
    assert!(root.join("usr/sbin/stronghost").exists() && root.join("etc/dhcp/dhclient.d/stronghost.sh").exists());
    let _ = std::fs::remove_dir_all(&root);
}
