//! The lab's measurements on a plain Linux host (no stronghost): each requirement must be seen
//! to fail, or the strong-host tests would prove nothing.

use crate::lab::{Lab, addr};

#[test]
fn plain_linux_host_fails_every_strong_host_requirement() {
    let n = 3;
    let mut lab = Lab::builder(n).build();
    for k in 0..n {
        lab.start_dhclient(k);
    }
    lab.wait_addresses(&(0..n).map(addr).collect::<Vec<_>>());
    // dhclient-script installs only the first default route; look at an interface without it.
    let main = lab.host_ok(&["ip", "-4", "route", "show", "default"]);
    let k = (0..n).find(|k| !main.contains(&format!("dev eth{k} "))).unwrap();
    let o = lab.evaluate(k, &addr(k));
    let failures = o.failures(k, &addr(k));
    let e = format!("eth{k}");
    assert!(o.by_name.0.is_none() || o.by_name.1 != [e.clone()], "curl --interface {e} worked on a weak host: {o:?}");
    assert!(o.by_addr.1 != [e.clone()], "traffic from {e}'s address left by {e} on a weak host: {o:?}");
    assert!(o.wrong_interface_accepted, "a weak host accepts {e}'s address on another interface: {o:?}");
    assert!(o.arp_repliers.len() > 1, "with arp_ignore=0 every interface answers ARP: {o:?}");
    assert!(failures.len() >= 4, "{failures:?}");
}
